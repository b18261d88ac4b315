"""One-file weights: export from a run, evaluate a shipped model (weights + config.json alone)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from amobilenet_jax import ship, steps, train, weights
from amobilenet_jax.errors import CheckpointError, RunNotFoundError
from tests.conftest import REPO


@pytest.fixture(scope="module")
def finished(tiny_config, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    return workdir, train.train_and_evaluate(tiny_config, workdir)


def test_export_and_evaluate_a_shipped_model_from_the_command_line(finished, tmp_path):
    workdir, result = finished
    export = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.ship", "--workdir", workdir],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr[-3000:]
    path = os.path.join(workdir, weights.WEIGHTS_FILE)
    assert f"wrote {path}" in export.stdout and f"step {result['final_step']}" in export.stdout
    tree = weights.load(path)
    assert all(leaf.dtype == np.float32 for leaf in __import__("jax").tree.leaves(tree))
    assert steps.params_fingerprint(tree["params"]) == result["params_fingerprint"]
    # A shipped model: the weights file, config.json without this machine's paths, results.
    shipped = tmp_path / "shipped"
    ship = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.ship", "--workdir", workdir, "--ship", str(shipped)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ship.returncode == 0, ship.stderr[-3000:]
    assert sorted(os.listdir(shipped)) == sorted(["config.json", "weights.msgpack", *ship.SHIPPED_FILES])
    with open(shipped / "config.json") as f:
        assert json.load(f)["data"]["cache_dir"] == ""
    evaluated = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", "--mode", "eval", "--workdir", str(shipped)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    last = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert last["accuracy"] == result["accuracy"] and last["split"] == result["split"]


def test_weights_that_do_not_fit_are_one_line_errors(finished, tiny_config, tmp_path):
    workdir, _ = finished
    path = ship.export_run(workdir, str(tmp_path / "w.msgpack"))
    wider = tiny_config.copy_and_resolve_references()
    wider.model.width = 0.5
    with pytest.raises(
        CheckpointError, match=r"w.msgpack: \['batch_stats'\]\['block\d+_\w+'\].* has shape .*, the config's model"
    ):
        weights.restore_into(steps.state_without_data(wider), path)
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(open(path, "rb").read()[:1000])
    with pytest.raises(CheckpointError, match="damaged.msgpack: not a weights file"):
        weights.load(str(damaged))
    with pytest.raises(RunNotFoundError, match="no such weights file"):
        weights.load(str(tmp_path / "absent.msgpack"))
