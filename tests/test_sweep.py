"""Sweeps: expansion, run names, one command for the whole study, skip/resume, tables, figures."""

import csv
import json
import os
import subprocess
import sys

import pytest

from amobilenet_jax import sweep
from amobilenet_jax.config import load_config_file, validate
from tests.conftest import REPO

STUDY = """
import os, sys
sys.path.insert(0, {repo!r})
from amobilenet_jax.config import load_config_file
from amobilenet_jax.sweep import product, with_seeds


def get_config(variant=None):
    c = load_config_file(os.path.join({repo!r}, "configs", "quickstart.py") + ":tiny")
    c.unlock()
    c.train.num_steps = 4
    return c


def get_sweep(variant=None):
    return with_seeds(product({{"loss.center_weight": [0.0, 0.1]}}), (0, 1))
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    path = str(root / "study.py")
    with open(path, "w") as f:
        f.write(STUDY.format(repo=REPO))
    return path, str(root / "runs")


def test_expansion_and_names():
    points = sweep.with_seeds(sweep.product({"model.cbam": [True, False], "model.cbam_blocks": [(4, 13)]}), (0, 1))
    assert [sweep.point_name(p) for p in points] == [
        "cbam=True,cbam_blocks=4-13,seed=0",
        "cbam=True,cbam_blocks=4-13,seed=1",
        "cbam=False,cbam_blocks=4-13,seed=0",
        "cbam=False,cbam_blocks=4-13,seed=1",
    ]
    assert sweep.point_name({"model.dropout": 0.1, "data.dropout": 0.2}) == "model.dropout=0.1,data.dropout=0.2"
    base = load_config_file(os.path.join(REPO, "configs", "quickstart.py"))
    point = sweep.apply_overrides(base, points[2])
    assert point.model.cbam is False and point.seed == 0 and base.model.cbam is None
    with pytest.raises(KeyError, match="model.cbma"):
        sweep.apply_overrides(base, {"model.cbma": True})


@pytest.mark.parametrize("name", ["ablation_cbam", "ablation_linear_dw", "ablation_lambda", "baselines"])
def test_shipped_studies_expand(name):
    for variant, seeds in ((None, 3), ("synthetic", 2), ("cpu", 2)):
        spec = os.path.join(REPO, "configs", f"{name}.py") + (f":{variant}" if variant else "")
        config = load_config_file(spec)
        points = sweep.load_sweep(spec)
        assert len({sweep.point_name(sweep.group_key(p)) for p in points}) * seeds == len(points)
        for p in points:
            validate(sweep.apply_overrides(config, p))  # every override names a real field
        assert config.data.name == ("synthetic" if variant == "synthetic" else "ferplus")
        if variant == "cpu":  # real FERPlus, sized for minutes a point on a 2-core CPU
            assert (config.data.image_size, config.train.num_epochs, config.data.label_mode) == (48, 4, "distribution")
            assert config.model.stem_stride is None  # the architecture's own: 2 for A-MobileNet


def test_study_runs_skips_and_tabulates(study):
    spec, workdir = study
    config = load_config_file(spec)
    points = sweep.load_sweep(spec)
    dirs = sweep.run_sweep(config, points, workdir, vectorize=False)
    assert [os.path.basename(d) for d in dirs] == [sweep.point_name(p) for p in points]
    mtimes = [os.path.getmtime(os.path.join(d, "results.json")) for d in dirs]
    sweep.run_sweep(config, points, workdir, vectorize=False)  # finished points are skipped
    assert mtimes == [os.path.getmtime(os.path.join(d, "results.json")) for d in dirs]

    table = sweep.write_tables(workdir, points, "study")
    assert [row["name"] for row in table] == ["center_weight=0.0", "center_weight=0.1"]
    assert all(row["seeds"] == 2 for row in table) and sum(row["best"] for row in table) == 1
    results = [json.load(open(os.path.join(d, "results.json"))) for d in dirs[:2]]
    mean = (results[0]["accuracy"] + results[1]["accuracy"]) / 2
    assert table[0]["accuracy_mean"] == pytest.approx(mean)
    with open(os.path.join(workdir, "ablation.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["center_weight=0.0", "center_weight=0.1"]
    assert float(rows[0]["accuracy_mean"]) == pytest.approx(mean)
    md = open(os.path.join(workdir, "ablation.md")).read()
    assert "| center_weight=0.1 |" in md and "±" in md
    tex = open(os.path.join(workdir, "ablation.tex")).read()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"center\_weight=0.1" in tex
    assert os.path.getsize(os.path.join(workdir, "ablation.png")) > 1000


def test_main_list_table_and_sweep_index(study):
    spec, workdir = study
    listed = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", "--config", spec, "--workdir", workdir, "--mode", "list"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    commands = listed.stdout.strip().splitlines()
    assert len(commands) == 4 and all("--sweep_index=" in c for c in commands)
    args = ["--config", spec, "--workdir", workdir + "_one", "--sweep_index=3"]
    one = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert one.returncode == 0, one.stderr[-2000:]
    assert sorted(os.listdir(workdir + "_one")) == ["center_weight=0.1,seed=1"]
    table = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", "--config", spec, "--workdir", workdir, "--mode", "table"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr[-2000:]
    assert "center_weight=0.0" in table.stdout


def test_baselines_table_carries_the_papers_numbers():
    row = {
        "name": "name=amobilenet", "overrides": {"model.name": "amobilenet"}, "split": "valid", "model": "amobilenet",
        "dataset": "ferplus", "accuracy_mean": 0.8, "accuracy_std": 0.01, "mean_class_accuracy": 0.6,
        "per_class_accuracy": {"neutral": 0.9}, "params": 3422820, "flops": 1.1e9, "train_time_s": 10.0,
        "seeds": 3, "best": True,
    }  # fmt: skip
    header, cells, raw = sweep.table_columns([row], paper=True)
    assert header[-2:] == ["paper acc (%)", "paper params"]
    assert cells[0][-2:] == ["88.11", "3.4M"] and raw[0]["paper_accuracy"] == 88.11
