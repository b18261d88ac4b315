"""The jitted train step, and a tiny end-to-end run: train -> checkpoint -> resume."""

import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax import evaluate, losses, steps, train
from amobilenet_jax.config import config_differences, num_train_steps
from amobilenet_jax.data.augment import prepare_images
from amobilenet_jax.errors import CheckpointError
from tests.tb_events import tags


@pytest.fixture(scope="module")
def experiment(tiny_config):
    return train.Experiment(tiny_config)


def test_learning_rate_is_keras_time_decay(tiny_config):
    cfg = tiny_config.copy_and_resolve_references()
    cfg.optimizer.learning_rate, cfg.optimizer.decay = 1e-4, 1e-5
    schedule = steps.learning_rate_schedule(cfg)
    assert float(schedule(0)) == pytest.approx(1e-4)
    assert float(schedule(100_000)) == pytest.approx(1e-4 / 2)


def test_cosine_schedule_warms_up_then_decays_to_zero(tiny_config):
    cfg = tiny_config.copy_and_resolve_references()
    cfg.optimizer.schedule, cfg.optimizer.warmup_steps = "cosine", 10
    factor = steps.learning_rate_factor(cfg, total_steps=110)
    assert [float(factor(s)) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert float(factor(60)) == pytest.approx(0.5, abs=1e-6)  # half way through the cosine
    assert float(factor(110)) == pytest.approx(0.0, abs=1e-7)
    # The optimizer applies it: Adam's normalised step on a constant gradient is ~lr_t.
    tx = steps.make_optimizer(cfg, total_steps=110)
    params = {"w": jnp.zeros(2)}
    opt_state = tx.init(params)
    sizes = []
    for _ in range(61):
        updates, opt_state = tx.update({"w": jnp.ones(2)}, opt_state, params)
        sizes.append(-float(updates["w"][0]))
    assert sizes[0] == pytest.approx(0.1, rel=1e-3) and sizes[60] == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(ValueError, match="total number of steps"):
        steps.learning_rate_factor(cfg)


def test_cosine_runs_may_not_change_their_length_on_resume(tiny_config):

    saved = json.loads(tiny_config.to_json())
    longer = tiny_config.copy_and_resolve_references()
    longer.train.num_epochs = 5
    assert config_differences(saved, json.loads(longer.to_json())) == []  # Keras decay: free
    saved["optimizer"]["schedule"] = "cosine"
    longer.optimizer.schedule = "cosine"
    assert config_differences(saved, json.loads(longer.to_json())) == ["train.num_epochs (2 -> 5)"]


def test_eval_flip_makes_predictions_mirror_invariant(experiment, tiny_config):
    """A stand-in model that tells left from right: class 0 when a pixel left of the centre is
    brighter than its mirror pixel, else 1 (single pixels: the mirror swaps them exactly)."""

    def left_or_right(variables, images, train, return_attention=False):
        row, col = images.shape[1] // 2, images.shape[2] // 4
        left, right = images[:, row, col, 0], images[:, row, -1 - col, 0]
        logits = jnp.full((images.shape[0], experiment.num_classes), -1e9).at[:, 0].set(left).at[:, 1].set(right)
        return logits, {}

    state = experiment.init_state().replace(apply_fn=left_or_right)
    batch = next(iter(experiment.eval_split("test").eval_batches(32)))
    mirrored = {**batch, "image": batch["image"][:, :, ::-1, :]}
    flip_cfg = tiny_config.copy_and_resolve_references()
    flip_cfg.eval_flip = True
    for cfg, invariant in ((tiny_config, False), (flip_cfg, True)):
        eval_step = steps.make_eval_step(cfg, experiment.num_classes)
        same = np.array_equal(eval_step(state, batch)[0], eval_step(state, mirrored)[0])
        assert same == invariant


def test_one_train_step_matches_the_paper_equations(experiment, tiny_config):
    cfg = tiny_config
    state = experiment.init_state()
    before = jax.device_get(state)
    batch = experiment.train_split.batch(experiment.order.indices(0))

    # The step's forward pass, redone outside it with the same per-step randomness.
    @jax.jit
    def reference(state, batch):
        augment_key, dropout_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
        images = prepare_images(batch["image"], cfg, augment_key)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        (logits, aux), _ = state.apply_fn(
            variables, images, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
        )
        return logits, aux["embedding"]

    logits, embedding = jax.device_get(reference(state, batch))
    labels = np.asarray(batch["label"])
    new_state, metrics = experiment.train_step(state, batch)
    m = {k: float(v) for k, v in metrics.compute().items()}

    # Eq. 7 with the (zero) initial centers, Eq. 6, Eq. 10.
    expected_center = 0.5 * np.mean(np.sum((embedding - before.centers[labels]) ** 2, axis=1))
    log_softmax = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    expected_softmax = -np.mean(log_softmax[np.arange(len(labels)), labels])
    assert m["center_loss"] == pytest.approx(expected_center, rel=1e-4)
    assert m["softmax_loss"] == pytest.approx(expected_softmax, rel=1e-4)
    assert m["loss"] == pytest.approx(expected_softmax + cfg.loss.center_weight * expected_center, rel=1e-4)
    assert m["learning_rate"] == pytest.approx(cfg.optimizer.learning_rate)
    # Eq. 9: centers move by their own rule, only for classes in the batch.
    expected_centers = np.asarray(losses.center_update(before.centers, embedding, labels, cfg.loss.center_update_rate))
    np.testing.assert_allclose(new_state.centers, expected_centers, rtol=1e-4, atol=1e-6)
    absent = np.setdiff1d(np.arange(experiment.num_classes), labels)
    np.testing.assert_array_equal(np.asarray(new_state.centers)[absent], 0.0)
    # The optimizer never sees the centers: its state mirrors the parameters only.
    assert jax.tree.structure(new_state.opt_state[0].mu) == jax.tree.structure(new_state.params)
    assert int(new_state.step) == 1
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before.params, jax.device_get(new_state.params))
    assert all(jax.tree.leaves(changed))


def test_train_step_is_a_pure_function_of_state_and_batch(experiment):
    batch = experiment.train_split.batch(experiment.order.indices(3))
    first, _ = experiment.train_step(experiment.init_state(), batch)
    second, _ = experiment.train_step(experiment.init_state(), batch)
    assert steps.params_fingerprint(first.params) == steps.params_fingerprint(second.params)
    np.testing.assert_array_equal(first.centers, second.centers)


def test_data_order_is_a_pure_function_of_seed_and_step(experiment):
    order = experiment.order
    fresh = type(order)(order.seed, order.labels, order.batch_size, order.balance)
    for step in (0, 5, order.steps_per_epoch, 3 * order.steps_per_epoch + 1):
        np.testing.assert_array_equal(order.indices(step), fresh.indices(step))
    epoch0 = np.concatenate([order.indices(s) for s in range(order.steps_per_epoch)])
    assert len(np.unique(epoch0)) == len(epoch0)  # no repeats within an epoch
    assert not np.array_equal(order.indices(0), order.indices(order.steps_per_epoch))


@pytest.fixture(scope="module")
def finished_run(tiny_config, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    result = train.train_and_evaluate(tiny_config, workdir)
    return workdir, result


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
    found = tags(workdir)
    for tag in ("train/loss", "train/softmax_loss", "train/center_loss", "train/accuracy", "train/learning_rate"):
        assert [s for s, _ in found[tag]] == list(range(4, total + 1, 4)), tag
    assert {s for s, _ in found["eval/test_accuracy"]} == {8, 16}
    assert found["eval/test_confusion_matrix"][0][1] == "image"
    assert "attention/block13" in found and "attention/input" in found


def test_interrupted_run_resumes_to_the_same_parameters(finished_run, tiny_config, tmp_path):
    _, uninterrupted = finished_run
    half = tiny_config.copy_and_resolve_references()
    half.train.num_steps = 8  # "killed" after 8 of 16 steps
    partial = train.train_and_evaluate(half, str(tmp_path))
    assert partial["final_step"] == 8
    resumed = train.train_and_evaluate(tiny_config, str(tmp_path))
    assert resumed["resumed_from_step"] == 8
    assert resumed["final_step"] == uninterrupted["final_step"]
    assert resumed["params_fingerprint"] == uninterrupted["params_fingerprint"]


def test_finished_run_is_not_retrained(finished_run, tiny_config):
    workdir, result = finished_run
    again = train.train_and_evaluate(tiny_config, workdir)
    assert again["resumed_from_step"] == result["final_step"]
    assert again["params_fingerprint"] == result["params_fingerprint"]


def test_checkpoint_from_another_config_is_refused(finished_run, tiny_config):
    workdir, _ = finished_run
    other = tiny_config.copy_and_resolve_references()
    other.loss.center_weight = 0.5
    with open(os.path.join(workdir, "config.json")) as f:
        config_before = f.read()
    with pytest.raises(CheckpointError, match=r"another experiment: loss.center_weight \(0.01 -> 0.5\)"):
        train.train_and_evaluate(other, workdir)
    with open(os.path.join(workdir, "config.json")) as f:
        assert f.read() == config_before


def _garble(step_dir: str) -> None:
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(finished_run, tiny_config, tmp_path):
    workdir, result = finished_run
    broken = str(tmp_path / "broken")
    shutil.copytree(workdir, broken)
    os.remove(os.path.join(broken, "results.json"))
    newest = os.path.join(broken, "checkpoints", str(result["final_step"]))
    _garble(newest)
    with pytest.warns(UserWarning, match=re.escape(newest) + r": unreadable checkpoint.*resuming from step 12"):
        again = train.train_and_evaluate(tiny_config, broken)
    assert again["resumed_from_step"] == 12
    assert again["params_fingerprint"] == result["params_fingerprint"]  # the lost steps are retrained exactly
    assert os.listdir(os.path.join(broken, "checkpoints.corrupt")) == [str(result["final_step"])]


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(finished_run, tiny_config, tmp_path):
    workdir, result = finished_run
    broken = str(tmp_path / "broken")
    shutil.copytree(workdir, broken)
    steps = sorted(os.listdir(os.path.join(broken, "checkpoints")))
    for step in steps:
        if step.isdigit():
            _garble(os.path.join(broken, "checkpoints", step))
    with pytest.raises(CheckpointError, match="no readable checkpoint.*step 16: cannot read its train state"):
        train.train_and_evaluate(tiny_config, broken)
    assert sorted(os.listdir(os.path.join(broken, "checkpoints"))) == steps  # nothing moved or deleted


def test_evaluate_checkpoint(finished_run, tiny_config):
    workdir, result = finished_run
    evaluated = evaluate.evaluate_checkpoint(tiny_config, workdir)
    assert evaluated["accuracy"] == pytest.approx(result["accuracy"])
    assert evaluated["step"] == result["final_step"]
    assert os.path.exists(os.path.join(workdir, "eval_test.json"))


def test_params_fingerprint_is_order_and_value_sensitive():
    a = {"a": jnp.ones(3), "b": jnp.zeros(2)}
    b = {"a": jnp.ones(3), "b": jnp.zeros(2).at[0].set(1e-7)}
    assert steps.params_fingerprint(a) == steps.params_fingerprint(jax.device_get(a))
    assert steps.params_fingerprint(a) != steps.params_fingerprint(b)


def test_oversampling_balances_each_epoch():
    from amobilenet_jax.data.pipeline import TrainOrder

    labels = np.array([0] * 50 + [1] * 10 + [2] * 3)
    order = TrainOrder(seed=3, labels=labels, batch_size=10, balance="oversample")
    assert order.epoch_size == 150 and order.steps_per_epoch == 15
    epoch = np.concatenate([order.indices(s) for s in range(order.steps_per_epoch)])
    np.testing.assert_array_equal(np.bincount(labels[epoch]), [50, 50, 50])
    # Every example of every class is used; the majority class exactly once.
    assert set(epoch.tolist()) == set(range(len(labels)))
    assert len(np.unique(epoch[labels[epoch] == 0])) == 50
    again = TrainOrder(seed=3, labels=labels, batch_size=10, balance="oversample")
    np.testing.assert_array_equal(again.indices(16), order.indices(16))
    with pytest.raises(ValueError, match="data.balance"):
        TrainOrder(seed=3, labels=labels, batch_size=10, balance="undersample")
