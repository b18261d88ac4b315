"""Shipping (amobilenet_jax/ship.py): a run's checkpoint as a weights file, and a shipped model
that evaluates from its directory alone, through the command line."""

import json
import os
import subprocess
import sys

import numpy as np

from amobilenet_jax import ship, steps, weights
from tests.conftest import REPO


def test_export_and_evaluate_a_shipped_model_from_the_command_line(finished_run, tmp_path):
    workdir, result = finished_run
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
    shipping = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.ship", "--workdir", workdir, "--ship", str(shipped)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert shipping.returncode == 0, shipping.stderr[-3000:]
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
    # Test-time crops: set in a shipped model's config by --eval_crops, or for one evaluation.
    cropped = tmp_path / "cropped"
    ship_cmd = [sys.executable, "-m", "amobilenet_jax.ship", "--workdir", workdir, "--ship"]
    shipping = subprocess.run(
        [*ship_cmd, str(cropped), "--eval_crops", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert shipping.returncode == 0, shipping.stderr[-3000:]
    with open(cropped / "config.json") as f:
        assert json.load(f)["eval_crops"] == 5
    bad = subprocess.run(
        [*ship_cmd, str(tmp_path / "x"), "--eval_crops", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode != 0 and "eval_crops=3 is not one of 0, 5" in bad.stderr and not (tmp_path / "x").exists()
    evaluated = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", "--mode", "eval", "--workdir", str(shipped), "--config.eval_crops=5"],  # noqa: E501
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "test-time views (the whole image and 5 crops at zoom 0.9" in evaluated.stdout
    with open(shipped / f"eval_{result['split']}.json") as f:
        assert json.load(f)["accuracy"] == json.loads(evaluated.stdout.strip().splitlines()[-1])["accuracy"]
