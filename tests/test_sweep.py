"""Sweeps: expansion, run names, one command for the whole study, skip/resume, tables, figures."""

import csv
import json
import os
import subprocess
import sys

import pytest

from amobilenet_jax import recipes, report, sweep
from amobilenet_jax.config import load_config_file, validate
from tests.conftest import REPO

STUDY = """
import os, sys
sys.path.insert(0, {repo!r})
from amobilenet_jax.config import load_config_file
from amobilenet_jax.recipes import product, with_seeds


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


def test_overrides_apply_to_a_copy_and_a_misspelt_one_is_an_error():
    points = recipes.with_seeds(recipes.product({"model.cbam": [True, False], "model.cbam_blocks": [(4, 13)]}), (0, 1))
    base = load_config_file(os.path.join(REPO, "configs", "quickstart.py"))
    point = sweep.apply_overrides(base, points[2])
    assert point.model.cbam is False and point.seed == 0 and base.model.cbam is None
    with pytest.raises(KeyError, match="model.cbma"):
        sweep.apply_overrides(base, {"model.cbma": True})


@pytest.mark.parametrize("name", ["ablation_cbam", "ablation_linear_dw", "ablation_lambda", "baselines"])
def test_shipped_studies_expand(name):
    for variant, seeds in ((None, 3), ("synthetic", 2), ("cpu", 2), ("converged", 3)):
        spec = os.path.join(REPO, "configs", f"{name}.py") + (f":{variant}" if variant else "")
        config = load_config_file(spec)
        points = sweep.load_sweep(spec)
        assert len({recipes.point_name(recipes.group_key(p)) for p in points}) * seeds == len(points)
        for p in points:
            validate(sweep.apply_overrides(config, p))  # every override names a real field
        assert config.data.name == ("synthetic" if variant == "synthetic" else "ferplus")
        if variant == "cpu":  # real FERPlus, sized for minutes a point on a 2-core CPU
            assert (config.data.image_size, config.train.num_epochs, config.data.label_mode) == (48, 4, "distribution")
            assert config.model.stem_stride is None  # the architecture's own: 2 for A-MobileNet
        if variant == "converged":  # the CPU recipe at stem stride 2, to a flat Valid curve
            assert (config.train.num_epochs, config.model.stem_stride, config.optimizer.schedule) == (
                24,
                None,
                "cosine",
            )
            assert [p["seed"] for p in points[: len(points) // seeds]] == [0] * (len(points) // seeds)  # seeds last


def test_converged_studies_run_the_papers_model_once_per_seed():
    """The four :converged studies name 33 points; sharing a points directory, they are 24 runs."""
    runs: list[dict] = []
    named = 0
    for name in ("ablation_cbam", "ablation_linear_dw", "ablation_lambda", "baselines"):
        spec = os.path.join(REPO, "configs", f"{name}.py:converged")
        config = load_config_file(spec)
        for point in sweep.load_sweep(spec):
            named += 1
            current = json.loads(sweep.apply_overrides(config, point).to_json())
            if not any(sweep.same_experiment(seen, current) for seen in runs):
                runs.append(current)
    assert (named, len(runs)) == (33, 24)


def test_same_experiment_reads_a_model_default_as_its_value(tiny_config):
    saved = json.loads(tiny_config.to_json())
    explicit = tiny_config.copy_and_resolve_references()
    explicit.model.cbam, explicit.model.linear_depthwise = True, True  # A-MobileNet's own defaults
    assert saved["model"]["cbam"] is None and sweep.same_experiment(saved, json.loads(explicit.to_json()))
    explicit.model.cbam = False
    assert not sweep.same_experiment(saved, json.loads(explicit.to_json()))
    longer = tiny_config.copy_and_resolve_references()
    longer.train.num_epochs = 3  # may resume (Keras decay), but reports another result: another point
    assert not sweep.same_experiment(saved, json.loads(longer.to_json()))
    logged = tiny_config.copy_and_resolve_references()
    logged.train.log_every_steps, logged.data.cache_dir = 1, "/elsewhere"
    assert sweep.same_experiment(saved, json.loads(logged.to_json()))


def test_vectorize_auto_is_off_on_cpu_only():
    assert sweep.resolve_vectorize("auto", "cpu") is False and sweep.resolve_vectorize("auto", "gpu") is True
    assert sweep.resolve_vectorize("false", "gpu") is False and sweep.resolve_vectorize("true", "cpu") is True
    with pytest.raises(ValueError, match="--vectorize"):
        sweep.resolve_vectorize("maybe", "cpu")


def test_study_runs_skips_and_tabulates(study):
    spec, workdir = study
    config = load_config_file(spec)
    points = sweep.load_sweep(spec)
    dirs = sweep.run_sweep(config, points, workdir, vectorize=False)
    assert [os.path.basename(d) for d in dirs] == [recipes.point_name(p) for p in points]
    mtimes = [os.path.getmtime(os.path.join(d, "results.json")) for d in dirs]
    sweep.run_sweep(config, points, workdir, vectorize=False)  # finished points are skipped
    assert mtimes == [os.path.getmtime(os.path.join(d, "results.json")) for d in dirs]

    table = report.write_tables(workdir, points, "study")
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
    assert os.path.getsize(os.path.join(workdir, "curves.png")) > 1000  # each row's Valid curve

    # Against a reference row (the paper's model): a paired interval over the two seeds, and a verdict.
    table = report.write_tables(workdir, points, "study", reference={"loss.center_weight": 0.1})
    other, ref = table
    assert ref["reference"] and not other["reference"]
    diffs = {seed: other["seed_accuracy"][seed] - ref["seed_accuracy"][seed] for seed in (0, 1)}
    assert other["difference"].mean == pytest.approx(sum(diffs.values()) / 2)
    assert other["difference"].test == "paired t" and other["difference"].seeds == 2
    with open(os.path.join(workdir, "ablation.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["verdict"] for r in rows] == [other["difference"].verdict, "reference"]
    md = open(os.path.join(workdir, "ablation.md")).read()
    assert "| center_weight=0.1 (paper's model) |" in md and "paired t interval" in md


def test_main_list_table_and_sweep_index(study):
    spec, workdir = study
    listed = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", "--config", spec, "--workdir", workdir, "--mode", "list"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    commands = listed.stdout.strip().splitlines()
    assert len(commands) == 4 and all("--sweep_index=" in c for c in commands)
    # Each command runs its point alone: tests/test_launch.py runs them as launched tasks.
    assert commands[3].endswith("--sweep_index=3  # center_weight=0.1,seed=1")
    table = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", "--config", spec, "--workdir", workdir, "--mode", "table"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr[-2000:]
    assert "center_weight=0.0" in table.stdout


# The same two runs as STUDY's lambda-0.1 points, named by another study's overrides.
OTHER_STUDY = STUDY.replace(
    'product({{"loss.center_weight": [0.0, 0.1]}})',
    'product({{"loss.center_weight": [0.1], "loss.center_update_rate": [0.5], "model.cbam": [True]}})',
)


def test_studies_sharing_points_dir_reuse_each_others_runs(study, tmp_path):
    """--points_dir: a study whose points are another study's runs (the same experiment under other
    names: A-MobileNet's CBAM is on by default) trains nothing and tabulates those runs."""
    spec, points_dir = study
    assert OTHER_STUDY != STUDY
    sweep.run_sweep(load_config_file(spec), sweep.load_sweep(spec), points_dir, vectorize=False)  # as the test above
    other = tmp_path / "other.py"
    other.write_text(OTHER_STUDY.format(repo=REPO))
    before = sorted(os.listdir(points_dir))
    workdir = str(tmp_path / "other")
    args = ["--config", str(other), "--workdir", workdir, "--points_dir", points_dir, "--vectorize=false"]
    done = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("finished, skipped") == 2 and "step " not in done.stdout
    assert sorted(os.listdir(points_dir)) == before  # no new run
    assert sorted(os.listdir(workdir)) == ["ablation.csv", "ablation.md", "ablation.png", "ablation.tex", "curves.png"]
    accuracies = []
    for seed in (0, 1):
        with open(os.path.join(points_dir, f"center_weight=0.1,seed={seed}", "results.json")) as f:
            accuracies.append(100 * json.load(f)["accuracy"])
    with open(os.path.join(workdir, "ablation.csv")) as f:
        (row,) = list(csv.DictReader(f))
    assert row["run"] == "center_weight=0.1,center_update_rate=0.5,cbam=True" and row["seeds"] == "2"
    assert 100 * float(row["accuracy_mean"]) == pytest.approx(sum(accuracies) / 2)
