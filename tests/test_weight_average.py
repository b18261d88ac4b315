"""``optimizer.ema_decay``: a moving average of the weights, kept in the optimizer state, is what
evaluation reads, what the weights file holds and what ``--mode eval`` of either scores."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax import evaluate, ship, steps, train, weights
from amobilenet_jax.errors import ConfigError
from tests.conftest import micro


def test_the_average_follows_the_warmed_up_recurrence_and_leaves_the_updates_alone():
    tx = steps.weight_average(0.5)
    params = {"w": jnp.array([0.0, 4.0])}
    state = tx.init(params)
    assert state.average["w"] is not params["w"]  # a copy: donating the train state must not alias it
    want = np.array([0.0, 4.0])
    for t, value in enumerate([1.0, 2.0, 3.0], start=1):
        p = {"w": jnp.array([value, -value])}
        updates, state = tx.update({"w": jnp.ones(2)}, state, p)
        decay = min(0.5, (1 + t) / (10 + t))  # warmed up: 2/11, 3/12, 4/13 < 0.5 for these steps
        want = decay * want + (1 - decay) * np.array([value, -value])
        np.testing.assert_allclose(updates["w"], np.ones(2))
        np.testing.assert_allclose(state.average["w"], want, rtol=1e-6)
    assert int(state.count) == 3


def test_without_ema_the_optimizer_state_is_as_before(tiny_config):
    """Runs without the average keep their checkpoints' layout (older runs resume)."""
    import optax

    params = {"w": jnp.zeros(3)}
    plain = steps.make_optimizer(tiny_config, 16).init(params)
    before = optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(lambda step: 1.0)).init(params)
    assert jax.tree.structure(plain) == jax.tree.structure(before)
    config = tiny_config.copy_and_resolve_references()
    config.optimizer.ema_decay = 0.99
    averaged = steps.make_optimizer(config, 16).init(params)
    assert isinstance(averaged[-1], steps.WeightAverageState)
    assert jax.tree.structure(averaged[:-1]) == jax.tree.structure(before)


def test_ema_decay_outside_zero_to_one_is_a_config_error(tiny_config):
    from amobilenet_jax.config import validate

    config = tiny_config.copy_and_resolve_references()
    config.optimizer.ema_decay = 1.0
    with pytest.raises(ConfigError, match="optimizer.ema_decay=1.0 must be in"):
        validate(config)


@pytest.fixture(scope="module")
def averaged_run(tiny_config, tmp_path_factory):
    config = micro(tiny_config)
    config.optimizer.ema_decay = 0.9
    workdir = str(tmp_path_factory.mktemp("averaged_run"))
    return config, workdir, train.train_and_evaluate(config, workdir)


def test_the_run_evaluates_saves_and_ships_the_average(averaged_run, tmp_path):
    config, workdir, result = averaged_run
    _, state = ship.restore_run_state(workdir)
    average = steps.evaluated_params(state)
    trained = jax.tree.leaves(state.params)
    assert any(not np.allclose(a, p) for a, p in zip(jax.tree.leaves(average), trained))  # not the same weights
    saved = weights.load(os.path.join(workdir, weights.WEIGHTS_FILE))
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(average), jax.tree.leaves(
        jax.tree.map(np.asarray, saved["params"]))):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(want), got, err_msg=jax.tree_util.keystr(path))
    assert result["params_fingerprint"] == steps.params_fingerprint(average)

    # --mode eval of the checkpoint and of the weights file alone both score the average.
    from_checkpoint = evaluate.evaluate_checkpoint(config, workdir)
    assert from_checkpoint["accuracy"] == pytest.approx(result["accuracy"])
    shipped = str(tmp_path / "shipped")
    os.makedirs(shipped)
    shutil.copy(os.path.join(workdir, weights.WEIGHTS_FILE), shipped)
    from_file = evaluate.evaluate_checkpoint(config, shipped)
    np.testing.assert_array_equal(from_file["confusion_matrix"], result["confusion_matrix"])
