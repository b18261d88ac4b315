"""The README's real-data CPU commands, run as a user runs them, on a generated FERPlus.

`configs/ferplus_cpu.py` and the `:cpu` studies read FERPlus in its official layout; here
the layout is a fixture (tests/fixtures.py) and the model is shrunk by overrides (width 0.25,
the 4-block body where the study allows, a few steps), so what is checked is the command line,
the recipe's fields reaching the run and the study's table, not the accuracy.
"""

import json
import os

import pytest

from amobilenet_jax.recipes import SMALL_BODY
from tests import fixtures
from tests.test_main import run_main

SHRINK = ["--config.model.width=0.25", "--config.train.batch_size=8", "--config.train.eval_batch_size=16"]
# and the 4-block body of the tiny configs (recipes.SMALL_BODY) where no point sets CBAM's blocks:
# a third of the 13 blocks' compile time
SMALL = [f"--config.model.{key}={value}" for key, value in SMALL_BODY.items()]


@pytest.fixture(scope="module")
def ferplus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ferplus"))
    fixtures.write_ferplus_folders(root, {"train": 40, "valid": 16})
    return root, str(tmp_path_factory.mktemp("ferplus_cache"))


def test_cpu_recipe_command_trains_on_ferplus_with_its_levers(ferplus, tmp_path):
    data, cache = ferplus
    workdir = str(tmp_path / "run")
    proc = run_main(
        "--config=configs/ferplus_cpu.py",
        f"--workdir={workdir}",
        f"--config.data.dir={data}",
        f"--config.data.cache_dir={cache}",
        "--config.train.num_steps=4",
        *SHRINK,
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "valid accuracy" in proc.stdout + proc.stderr
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    # The recipe's changes from the paper reached the run.
    assert config["model"]["stem_stride"] == 1 and config["data"]["label_mode"] == "distribution"
    assert (config["data"]["image_size"], config["optimizer"]["schedule"], config["eval_flip"]) == (48, "cosine", True)
    assert config["eval_crops"] == 5  # the final evaluation votes over 12 views, per-epoch ones over 2
    out = proc.stdout + proc.stderr
    assert out.count("final evaluation: 12 test-time views (the whole image and 5 crops at zoom 0.9") == 1
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert results["split"] == "valid" and results["final_step"] == 4
    # Best is over the per-epoch evaluations' 2 views (none in 4 steps), never the final one's 12.
    assert (results["best_accuracy"], results["best_epoch"], results["best_views"]) == (None, None, 2)
    assert len(results["per_class_accuracy"]) == 8


def test_cpu_study_point_and_table_from_the_command_line(ferplus, tmp_path):
    """A :cpu study as a cluster would run it: the list of point commands, one point, the table."""
    data, cache = ferplus
    workdir = str(tmp_path / "study")
    common = [
        "--config=configs/ablation_cbam.py:cpu",
        f"--workdir={workdir}",
        f"--config.data.dir={data}",
        f"--config.data.cache_dir={cache}",
    ]
    listed = run_main(*common, "--mode=list")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert len([line for line in listed.stdout.splitlines() if "--sweep_index" in line]) == 4  # off / paper, 2 seeds
    # The point without CBAM (the paper's model needs the 13 blocks CBAM's blocks name): the 4-block body.
    proc = run_main(*common, "--sweep_index=0", "--config.train.num_steps=2", *SHRINK, *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = run_main(*common, "--mode=table")
    assert table.returncode == 0, table.stderr[-3000:]
    with open(os.path.join(workdir, "ablation.md")) as f:
        md = f.read()
    assert "| cbam=False |" in md and "valid accuracy" in md


def test_converged_study_runs_a_point_into_the_shared_points_dir(ferplus, tmp_path):
    """A :converged study point from the command line, into a shared points directory. (The lever
    study's points run by the same path; test_recipe_lever_study_puts_back_one_lever_per_point
    checks its configs.)"""
    spec, extra, point = "configs/ablation_lambda.py:converged", ["--points_dir=POINTS"], "center_weight=0.0,seed=0"
    data, cache = ferplus
    points_dir = str(tmp_path / "points")
    extra = [arg.replace("POINTS", points_dir) for arg in extra]
    workdir = str(tmp_path / "study")
    proc = run_main(
        f"--config={spec}",
        f"--workdir={workdir}",
        f"--config.data.dir={data}",
        f"--config.data.cache_dir={cache}",
        "--sweep_index=1",
        "--config.train.num_steps=2",
        *extra,
        *SHRINK,
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = os.path.join(points_dir if extra else workdir, point)
    with open(os.path.join(run_dir, "results.json")) as f:
        assert json.load(f)["split"] == "valid"
    if "converged" in spec:  # the recipe at stem stride 2 over 24 epochs (a cosine schedule)
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
        assert (config["train"]["num_epochs"], config["model"]["stem_stride"]) == (24, None)


def test_recipe_lever_study_puts_back_one_lever_per_point():
    from amobilenet_jax import sweep
    from amobilenet_jax.config import load_config_file, validate
    from amobilenet_jax.recipes import paper_recipe
    from tests.conftest import REPO

    recipe = load_config_file(os.path.join(REPO, "configs", "ferplus_cpu.py"))
    assert sweep.load_sweep(os.path.join(REPO, "configs", "ferplus_cpu.py")) is None  # one run, not a study
    spec = os.path.join(REPO, "configs", "ferplus_cpu.py:levers")
    base = load_config_file(spec)
    assert (base.train.num_epochs, base.model.stem_stride) == (4, None)
    paper = paper_recipe("ferplus")
    points = sweep.load_sweep(spec)
    assert [p["seed"] for p in points] == [0] * len(points)
    changed = []
    for point in points:
        config = sweep.apply_overrides(base, point)
        validate(config)
        (field,) = [k for k in point if k != "seed"]
        section, name = field.split(".")
        value = config[section][name]
        # The first point is the recipe itself; every other one puts a lever back to the paper's choice.
        assert value == (recipe if not changed else paper)[section][name], field
        changed.append(field)
    assert changed == [
        "data.label_mode",
        "data.label_mode",
        "loss.label_smoothing",
        "data.balance",
        "optimizer.schedule",
    ]


def test_full_length_lever_study_changes_one_field_of_the_recipe_per_point():
    from amobilenet_jax import sweep
    from amobilenet_jax.config import config_differences, load_config_file, validate
    from tests.conftest import REPO

    recipe = load_config_file(os.path.join(REPO, "configs", "ferplus_cpu.py"))
    spec = os.path.join(REPO, "configs", "ferplus_cpu.py:levers_full")
    base = load_config_file(spec)
    # Run C's recipe at full length, not the 4-epoch scale; evaluated as the study measured it
    # (the whole image and its mirror), not over the final recipe's test-time crops.
    assert (base.eval_crops, recipe.eval_crops) == (0, 5)
    final = sweep.apply_overrides(base, {"data.balance": "power", "train.num_steps": 7514, "eval_crops": 5})
    assert final.to_json() == recipe.to_json()
    recipe = load_config_file(spec)
    changed = []
    for point in sweep.load_sweep(spec):
        config = sweep.apply_overrides(recipe, point)
        validate(config)
        diffs = config_differences(json.loads(recipe.to_json()), json.loads(config.to_json()))
        changed.append([d.split(" ")[0] for d in diffs if not d.startswith("seed ")])
    assert changed == [[], ["optimizer.ema_decay"], ["data.balance", "train.num_steps"], ["train.coarse_stem_epochs"]]


def test_final_recipe_seeds_share_their_seed_0_with_the_full_length_lever_study(tmp_path):
    """``:seeds`` is the final recipe (square-root class sampling) at three seeds, one table row;
    under one --points_dir its seed 0 is the lever study's point of that lever, found by
    experiment, not by name."""
    from amobilenet_jax import recipes, sweep
    from amobilenet_jax.config import load_config_file
    from tests.conftest import REPO

    recipe = load_config_file(os.path.join(REPO, "configs", "ferplus_cpu.py:seeds"))
    assert recipe.eval_crops == 0  # as the committed points were evaluated
    seeds = sweep.load_sweep(os.path.join(REPO, "configs", "ferplus_cpu.py:seeds"))
    final = {"data.balance": "power", "train.num_steps": 7514}
    assert seeds == [{**final, "seed": 0}, {**final, "seed": 1}, {**final, "seed": 2}]
    assert {recipes.point_name(recipes.group_key(p)) for p in seeds} == {"balance=power,num_steps=7514"}  # one row
    levers = sweep.load_sweep(os.path.join(REPO, "configs", "ferplus_cpu.py:levers_full"))
    assert levers[2] == seeds[0]
    lever_dir = tmp_path / "the lever study's run"  # found by its config, whatever its name
    lever_dir.mkdir()
    (lever_dir / "config.json").write_text(sweep.apply_overrides(recipe, levers[2]).to_json())
    dirs = sweep.point_dirs(recipe, seeds, str(tmp_path))
    assert dirs[0] == str(lever_dir) and dirs[1] == str(tmp_path / "balance=power,num_steps=7514,seed=1")


def test_long_recipe_screen_changes_one_lever_a_point_and_its_teachers_load():
    """``configs/ferplus_long.py:screen``: the long recipe at the stem's stride 2, one lever a point
    (the length counts as the baseline's), and the committed teachers fit the paper's model."""
    from amobilenet_jax import distill, recipes, sweep
    from amobilenet_jax.config import config_differences, load_config_file, validate
    from tests.conftest import REPO

    long = load_config_file(os.path.join(REPO, "configs", "ferplus_long.py"))
    assert (long.model.stem_stride, long.data.balance, long.eval_crops) == (1, "power", 5)
    spec = os.path.join(REPO, "configs", "ferplus_long.py:screen")
    base = load_config_file(spec)
    assert base.model.stem_stride is None  # the architecture's own, 2
    changed = {}
    for point in sweep.load_sweep(spec):
        config = sweep.apply_overrides(base, point)
        validate(config)
        assert "/" not in recipes.point_name(point)
        diffs = config_differences(json.loads(base.to_json()), json.loads(config.to_json()))
        fields = [d.split(" ")[0] for d in diffs if not d.startswith(("seed ", "train.num_steps "))]
        changed[recipes.point_name(point)] = fields
        if config.loss.distill_weight > 0 and config.loss.distill_views == "batch":  # one load: the same teachers
            cwd = os.getcwd()
            os.chdir(REPO)  # the teachers are named from the repository's root, where run.sh runs
            try:
                teachers = distill.load_teachers(config)
            finally:
                os.chdir(cwd)
            assert [t.path for t in teachers] == list(config.loss.distill_from) and len(teachers) == 2
    distill = ["loss.distill_from", "loss.distill_weight"]
    assert list(changed.values()) == [
        [], [], [*distill[:1], "loss.distill_views", *distill[1:]], distill, ["optimizer.weight_decay"],
        ["optimizer.ema_decay"], ["data.augment.cutmix", "data.augment.mixup"], ["data.augment.degrade"],
        ["data.augment.degrade"], ["data.augment.erase"], ["data.augment.scale_out"], ["optimizer.sam_rho"],
    ]  # fmt: skip
    # :full is the long recipe itself at stride 1, its points named apart from the screen's baseline
    full_spec = os.path.join(REPO, "configs", "ferplus_long.py:full")
    full_points = sweep.load_sweep(full_spec)
    names = [recipes.point_name(p) for p in full_points]
    assert names == [f"stem_stride=1,num_steps=22100,seed={seed}" for seed in (0, 1)] and not set(names) & set(changed)
    full = sweep.apply_overrides(load_config_file(full_spec), full_points[0])
    validate(full)
    assert config_differences(json.loads(long.to_json()), json.loads(full.to_json())) == []  # what it trains
    assert full.train.checkpoint_every_steps == 1000


def test_readme_command_builds_the_shipped_models_config(monkeypatch):
    """The README's training command (its --config flags parsed as main parses them) builds the
    shipped model's config.json: every field but the data's paths and the fields that change no
    result, and those that change what a run reports (eval_crops, the length) too."""
    import re

    from absl import flags
    from ml_collections import config_flags

    from amobilenet_jax import sweep
    from amobilenet_jax.config import FREE_FIELDS, flatten, from_json
    from tests.conftest import REPO

    with open(os.path.join(REPO, "README.md")) as f:
        (command,) = re.findall(r"^python -m amobilenet_jax\.main --config configs/ferplus_cpu\.py .*$", f.read(), re.M)
    argv = command.split()[3:]  # after python -m amobilenet_jax.main
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True)
    flags.DEFINE_string("workdir", None, "", flag_values=values)
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", ["main", *argv])  # config_flags reads the overrides from sys.argv
    values(["main", *argv])
    built = json.loads(values.config.to_json())
    with open(os.path.join(REPO, "amobilenet_jax", "assets", "ferplus_amobilenet", "config.json")) as f:
        shipped = json.loads(from_json(json.load(f), "shipped config.json").to_json())
    assert sweep.same_experiment(shipped, built)
    aside = set(FREE_FIELDS) - set(sweep.REPORT_FIELDS) | {"data.dir", "data.cache_dir"}
    a, b = flatten(shipped), flatten(built)
    assert {k: v for k, v in a.items() if k not in aside} == {k: v for k, v in b.items() if k not in aside}
