"""A tiny end-to-end run: what its directory holds, and that a finished run is not trained again.

An interrupted run resuming to the uninterrupted result is test_reliability.py's, through the
command line (SIGTERM, kill -9 inside a save, SIGINT)."""

import json
import os

import numpy as np
import pytest

from amobilenet_jax import steps, train, weights
from amobilenet_jax.config import num_train_steps
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
    assert found["eval/test_confusion_matrix"][0][1] == "image"
    assert "attention/block4" in found and "attention/input" in found  # the tiny model's last CBAM


def test_finished_run_is_not_retrained(finished_run, tiny_config):
    workdir, result = finished_run
    again = train.train_and_evaluate(tiny_config, workdir)
    assert again["resumed_from_step"] == result["final_step"]
    assert again["params_fingerprint"] == result["params_fingerprint"]
