"""Vectorised training: a vmapped group of sweep points trains as its points would alone, from the
command line (``--vectorize=true``) as a user starts it."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from amobilenet_jax import checkpoints, train, vectorized
from amobilenet_jax.errors import CheckpointError
from amobilenet_jax.summary_writer import read_scalars
from tests.conftest import REPO, load_config, micro
from tests.tb_events import tags

# Training length of the equivalence tests. On the tiny model (32 px, batch 16) the
# last block sees 2x2 maps, and BatchNorm over 16 near-constant values amplifies the
# ~1e-6 difference between vmapped (batched) and plain convolutions: after one step
# vmapped and sequential parameters agree to 1e-5, from the second step on they drift
# apart by ~1e-3 and keep growing. One step still checks the per-point data order,
# rng, hparams and optimizer state; the resume checks a group against itself, exactly.
EQUIVALENCE_STEPS = 1


def _config(seed=0, center_weight=None, num_steps=None):
    c = micro(load_config("quickstart", "tiny"))
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


def _layout(workdir):
    """A run directory's files (one name for the event files), checkpoint steps and TensorBoard
    tags with their steps."""
    names = {"events" if n.startswith("events.out.tfevents") else n for n in os.listdir(workdir)}
    logged = {tag: sorted(step for step, _ in found) for tag, found in tags(workdir).items()}
    return names, sorted(os.listdir(os.path.join(workdir, "checkpoints"))), logged


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.centers, b.centers, rtol=1e-4, atol=1e-5)


# The study of the first test: the tiny run at EQUIVALENCE_STEPS, with _config's eps, and two
# points that differ in both seed and lambda.
TWO_POINTS = """
import os, sys
sys.path.insert(0, {repo!r})
from amobilenet_jax.config import load_config_file
from tests.conftest import micro


def get_config(variant=None):
    c = micro(load_config_file(os.path.join({repo!r}, "configs", "quickstart.py") + ":tiny"))
    c.unlock()
    c.optimizer.eps = 1e-3
    c.train.num_steps = {steps}
    return c


def get_sweep(variant=None):
    return [{{"seed": 0}}, {{"loss.center_weight": 0.0, "seed": 1}}]
"""
POINTS = ("seed=0", "center_weight=0.0,seed=1")


def test_vmapped_points_match_sequential_runs_and_resume_exactly(tmp_path):
    """``--vectorize=true`` trains a study's two points (other seed, other lambda) as one vmapped
    group, as they train alone; the group, stopped after its first step and run again for two,
    ends bit-identical to a group that ran two steps straight, counting the training time its
    checkpoint carries; and its checkpoint is not resumed by other points."""
    study = tmp_path / "study.py"
    study.write_text(TWO_POINTS.format(repo=REPO, steps=EQUIVALENCE_STEPS))
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "amobilenet_jax.main", "--config", str(study), "--workdir", str(runs)]
    proc = subprocess.run([*command, "--vectorize=true"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[group of 2]" in proc.stdout and (runs / "ablation.md").exists()
    workdirs = [str(runs / name) for name in POINTS]
    results = []
    for workdir in workdirs:
        with open(os.path.join(workdir, "results.json")) as f:
            results.append(json.load(f))
        assert results[-1]["vectorized_group_size"] == 2
        assert os.path.getsize(os.path.join(workdir, "confusion_matrix.png")) > 1000
    assert len({r["params_fingerprint"] for r in results}) == 2
    # The second point differs from the first in both seed and lambda: alone, it is what the group made of it.
    config = _config(seed=1, center_weight=0.0, num_steps=EQUIVALENCE_STEPS)
    single = train.train_and_evaluate(config, str(tmp_path / "alone"))
    _assert_same_state(_restore(config, workdirs[1]), _restore(config, str(tmp_path / "alone")))
    assert set(single) | {"vectorized_group_size"} == set(results[1])
    # One loop wrote both: the same files, checkpoint steps, TensorBoard tags and steps.
    assert _layout(workdirs[1]) == _layout(str(tmp_path / "alone"))
    # The group above is a group "killed" after 1 step: the same points for 2 steps resume it.
    two = [_config(seed=0, num_steps=2), _config(seed=1, center_weight=0.0, num_steps=2)]
    group_dir = str(runs / "_vectorized" / "0+1")
    position_file = os.path.join(group_dir, "checkpoints", "1", "data", "metadata")
    with open(position_file) as f:
        position = json.load(f)
    position["train_time_s"] = 1e6  # as if the group's attempts before had trained 1e6 s
    with open(position_file, "w") as f:
        json.dump(position, f)
    resumed = vectorized.train_and_evaluate_group(two, workdirs, group_dir)
    assert [r["resumed_from_step"] for r in resumed] == [1, 1] and [r["final_step"] for r in resumed] == [2, 2]
    assert all(r["train_time_s"] > 1e6 for r in resumed)  # the resumed group counts its checkpoint's time
    # As a resumed run's, each point's curves keep what the first attempt logged at the checkpoint's
    # step (its evaluation at step 1: the state resumed from) and the new attempt's after it.
    assert [step for step, _ in read_scalars(workdirs[0])["eval/test_accuracy"]] == [1, 2]
    straight = vectorized.train_and_evaluate_group(
        two, [str(tmp_path / "s0"), str(tmp_path / "s1")], str(tmp_path / "straight")
    )
    assert [r["params_fingerprint"] for r in resumed] == [r["params_fingerprint"] for r in straight]
    other = [_config(seed=1, num_steps=2), _config(seed=0, num_steps=2)]
    with pytest.raises(CheckpointError, match="another experiment"):
        vectorized.train_and_evaluate_group(other, [str(tmp_path / "o0"), str(tmp_path / "o1")], group_dir)


def test_group_points_splits_on_shape_changing_fields():
    a, b, c = _config(seed=0), _config(seed=1, center_weight=0.3), _config(seed=2)
    c.optimizer.learning_rate = 1e-4
    d = _config(seed=0)
    d.model.cbam = not d.model.cbam
    assert vectorized.group_points([a, d, b, c]) == [[0, 2, 3], [1]]
    assert vectorized.vectorizable_key(a) == vectorized.vectorizable_key(b)
    with pytest.raises(ValueError, match="differ in more than seed"):
        vectorized.train_and_evaluate_group([a, d], ["/nonexistent/a", "/nonexistent/b"], "/nonexistent/g")
