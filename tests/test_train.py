"""A tiny end-to-end run: what its directory holds, and that a finished run is not trained again.

An interrupted run resuming to the uninterrupted result is test_reliability.py's, through the
command line (SIGTERM, kill -9 inside a save, SIGINT)."""

import json
import os

import numpy as np
import pytest

from amobilenet_jax import steps, train, weights
from amobilenet_jax.config import num_train_steps
from amobilenet_jax.summary_writer import read_scalars
from tests.tb_events import tags


def test_run_directory_holds_everything(finished_run, tiny_config):
    workdir, result = finished_run
    total = num_train_steps(tiny_config, tiny_config.data.num_train // tiny_config.train.batch_size)
    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(result))
    for key in (
        "accuracy",
        "per_class_accuracy",
        "confusion_matrix",
        "params",
        "flops",
        "final_step",
        "params_fingerprint",
    ):
        assert key in saved
    assert saved["final_step"] == total
    assert np.sum(saved["confusion_matrix"]) == tiny_config.data.num_test
    assert saved["accuracy"] == pytest.approx(np.trace(saved["confusion_matrix"]) / tiny_config.data.num_test)
    assert set(saved["per_class_accuracy"]) == {
        "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"
    }  # fmt: skip
    assert saved["flops"] > 0 and saved["params"] > 0
    assert len(saved["params_fingerprint"]) == 64
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f) == json.loads(tiny_config.to_json())
    assert os.path.getsize(os.path.join(workdir, "confusion_matrix.png")) > 1000
    assert os.path.getsize(os.path.join(workdir, "training_curves.png")) > 1000
    assert str(total) in os.listdir(os.path.join(workdir, "checkpoints"))
    # The trained model in one file, for predict, export and visualize (which never read Orbax).
    trained = weights.load(os.path.join(workdir, weights.WEIGHTS_FILE))
    assert steps.params_fingerprint(trained["params"]) == saved["params_fingerprint"]
    found = tags(workdir)
    for tag in ("train/loss", "train/softmax_loss", "train/center_loss", "train/accuracy", "train/learning_rate"):
        assert [s for s, _ in found[tag]] == list(range(4, total + 1, 4)), tag
    assert {s for s, _ in found["eval/test_accuracy"]} == {8, 16}
    # No eval_crops: the final evaluation votes over the per-epoch ones' views, and best is over all.
    best_step, best_accuracy = max(read_scalars(workdir)["eval/test_accuracy"], key=lambda s_v: (s_v[1], -s_v[0]))
    assert saved["best_accuracy"] == pytest.approx(best_accuracy) and saved["best_views"] == 1
    assert saved["best_epoch"] == best_step * tiny_config.train.batch_size / tiny_config.data.num_train
    assert found["eval/test_confusion_matrix"][0][1] == "image"
    assert "attention/block4" in found and "attention/input" in found  # the tiny model's last CBAM


def test_best_compares_evaluations_over_the_same_views():
    """best_accuracy/best_epoch: the per-epoch evaluations (the whole image, and its mirror under
    eval_flip); a final evaluation that votes over eval_crops' views too is not entered among them."""
    result = {"mean_class_accuracy": 0.5}
    best = train.BestEval({}, views=2)
    best.update(1, "valid", {**result, "accuracy": 0.6})
    best.update(2, "valid", {**result, "accuracy": 0.7})
    line = best.final(3, "valid", {**result, "accuracy": 0.8}, views=12)
    assert best.results() == {"best_accuracy": 0.7, "best_epoch": 2, "best_views": 2}
    assert line == (
        "epoch 3 valid accuracy 0.8000 mean per class 0.5000 over 12 views; "
        "per-epoch best over 2 views: 0.7000 (epoch 2)"
    )
    none_yet = train.BestEval({}, views=2).final(3, "valid", {**result, "accuracy": 0.8}, views=12)
    assert none_yet.endswith("per-epoch best over 2 views: none")
    # The same views: the final evaluation is one more of them.
    same = train.BestEval(best.position(), views=2)
    assert same.final(3, "valid", {**result, "accuracy": 0.8}, views=2).endswith("best 0.8000 (epoch 3)")
    assert same.results() == {"best_accuracy": 0.8, "best_epoch": 3, "best_views": 2}
    # Resumed with eval_flip changed (a free field): the earlier best was over other views.
    assert train.BestEval(best.position(), views=1).results()["best_accuracy"] is None


def test_finished_run_is_not_retrained(finished_run, tiny_config):
    workdir, result = finished_run
    again = train.train_and_evaluate(tiny_config, workdir)
    assert again["resumed_from_step"] == result["final_step"]
    assert again["params_fingerprint"] == result["params_fingerprint"]
