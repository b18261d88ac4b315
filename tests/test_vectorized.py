"""Vectorised training: a vmapped group of sweep points trains as its points would alone."""

import json
import os

import jax
import numpy as np
import pytest

from amobilenet_jax import checkpoints, train, vectorized
from amobilenet_jax.errors import CheckpointError
from tests.conftest import load_config

# Training length of the equivalence tests. On the tiny model (32 px, batch 16) the
# last blocks see 1x1 maps, and BatchNorm over 16 near-constant values amplifies the
# ~1e-6 difference between vmapped (batched) and plain convolutions: after one step
# vmapped and sequential parameters agree to 1e-5, from the second step on they drift
# apart by ~1e-3 and keep growing. One step still checks the per-point data order,
# rng, hparams and optimizer state; the resume checks a group against itself, exactly.
EQUIVALENCE_STEPS = 1


def _config(seed=0, center_weight=None, num_steps=None):
    c = load_config("quickstart", "tiny")
    c.seed = seed
    # Adam's first steps move every parameter by +-lr whatever its gradient's size, so a
    # parameter with a zero true gradient would move by the sign of rounding noise;
    # a large eps makes the update a smooth function of the gradient.
    c.optimizer.eps = 1e-3
    if center_weight is not None:
        c.loss.center_weight = center_weight
    if num_steps is not None:
        c.train.num_steps = num_steps
    return c


def _restore(config, workdir):
    exp = train.Experiment(config)
    mngr = checkpoints.run_manager(workdir, config)
    state, _ = checkpoints.restore_run(mngr, exp.init_state(), config)
    mngr.close()
    return jax.device_get(state)


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.centers, b.centers, rtol=1e-4, atol=1e-5)


def _group_matches_sequential(configs, tmp_path, alone_points=None):
    """Trains ``configs`` as one group, and the points ``alone_points`` (default all) alone: equal."""
    group_dirs = [str(tmp_path / f"point{i}") for i in range(len(configs))]
    results = vectorized.train_and_evaluate_group(configs, group_dirs, str(tmp_path / "group"))
    for i, config in enumerate(configs):
        if alone_points is not None and i not in alone_points:
            continue
        alone = str(tmp_path / f"alone{i}")
        single = train.train_and_evaluate(config, alone)
        _assert_same_state(_restore(config, group_dirs[i]), _restore(config, alone))
        assert results[i]["vectorized_group_size"] == len(configs)
        assert set(single) | {"vectorized_group_size"} == set(results[i])
        with open(os.path.join(group_dirs[i], "results.json")) as f:
            assert json.load(f) == json.loads(json.dumps(results[i]))
        assert os.path.getsize(os.path.join(group_dirs[i], "confusion_matrix.png")) > 1000
    return results


def test_vmapped_points_match_sequential_runs_and_resume_exactly(tmp_path):
    """Two points in one program (other seed, other lambda) train as they would alone; the group,
    stopped after its first step and run again for two, ends bit-identical to a group that ran
    two steps straight; and its checkpoint is not resumed by other points."""
    configs = [
        _config(seed=0, num_steps=EQUIVALENCE_STEPS),
        _config(seed=1, center_weight=0.0, num_steps=EQUIVALENCE_STEPS),
    ]
    # The second point differs from the first in both seed and lambda: alone, it is what the group made of it.
    results = _group_matches_sequential(configs, tmp_path, alone_points=[1])
    assert len({r["params_fingerprint"] for r in results}) == 2
    # The group above is a group "killed" after 1 step: the same points for 2 steps resume it.
    two = [_config(seed=0, num_steps=2), _config(seed=1, center_weight=0.0, num_steps=2)]
    workdirs = [str(tmp_path / f"point{i}") for i in range(2)]
    resumed = vectorized.train_and_evaluate_group(two, workdirs, str(tmp_path / "group"))
    assert [r["resumed_from_step"] for r in resumed] == [1, 1] and [r["final_step"] for r in resumed] == [2, 2]
    straight = vectorized.train_and_evaluate_group(
        two, [str(tmp_path / "s0"), str(tmp_path / "s1")], str(tmp_path / "straight")
    )
    assert [r["params_fingerprint"] for r in resumed] == [r["params_fingerprint"] for r in straight]
    other = [_config(seed=1, num_steps=2), _config(seed=0, num_steps=2)]
    with pytest.raises(CheckpointError, match="another experiment"):
        vectorized.train_and_evaluate_group(
            other, [str(tmp_path / "o0"), str(tmp_path / "o1")], str(tmp_path / "group")
        )


def test_group_points_splits_on_shape_changing_fields():
    a, b, c = _config(seed=0), _config(seed=1, center_weight=0.3), _config(seed=2)
    c.optimizer.learning_rate = 1e-4
    d = _config(seed=0)
    d.model.cbam = not d.model.cbam
    assert vectorized.group_points([a, d, b, c]) == [[0, 2, 3], [1]]
    assert vectorized.vectorizable_key(a) == vectorized.vectorizable_key(b)
    with pytest.raises(ValueError, match="differ in more than seed"):
        vectorized.train_and_evaluate_group([a, d], ["/nonexistent/a", "/nonexistent/b"], "/nonexistent/g")
