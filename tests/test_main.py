"""The command line: --mode summary, train + resume through main, config overrides."""

import json
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_main(*args, timeout=600):
    proc = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.main", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    return proc


def test_summary_prints_table_and_json_without_data():
    proc = run_main("--config", "configs/quickstart.py", "--mode", "summary", "--config.data.image_size=64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    info = json.loads(lines[-1])
    assert set(info) == {"model", "num_classes", "image_size", "params", "flops"}
    assert info["model"] == "amobilenet" and info["num_classes"] == 8 and info["image_size"] == 64
    assert any("block13_cbam/spatial/conv/kernel" in line for line in lines)
    no_cbam = run_main(
        "--config",
        "configs/quickstart.py",
        "--mode",
        "summary",
        "--config.data.image_size=64",
        "--config.model.cbam=False",
    )
    assert no_cbam.returncode == 0, no_cbam.stderr[-2000:]
    info_no_cbam = json.loads(no_cbam.stdout.strip().splitlines()[-1])
    assert info_no_cbam["params"] < info["params"]
    assert not any("cbam" in line for line in no_cbam.stdout.splitlines())
    # Bigger images cost more FLOPs for the same parameters.
    assert 0 < info_no_cbam["flops"] < info["flops"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--config.model.cbma=False"],
            ["in --config.model.cbma=False", "no config field 'cbma' (did you mean \"cbam\"?)"],
        ),
        (["--config.model.width=abc"], ["--config.model.width=abc", "could not convert"]),
    ],
)
def test_bad_override_is_a_one_line_error(args, expected):
    proc = run_main("--config", "configs/quickstart.py", "--mode", "summary", *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize(
    "config,expected",
    [
        ("configs/quickstart.py:nope", "unknown variant 'nope'"),
        ("configs/no_such_file.py", "No such file or directory: 'configs/no_such_file.py'"),
    ],
)
def test_bad_config_file_is_a_one_line_error(config, expected):
    proc = run_main("--config", config, "--mode", "summary")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_train_requires_workdir():
    proc = run_main("--config", "configs/quickstart.py:tiny")
    assert proc.returncode != 0 and "--workdir" in proc.stderr


def test_multihost_flags_go_together():
    proc = run_main("--config", "configs/quickstart.py:tiny", "--workdir", "/nonexistent", "--coordinator_address=x:1")
    assert proc.returncode != 0
    assert "--coordinator_address, --num_processes and --process_id go together" in proc.stderr


def test_list_keeps_space_form_overrides_and_quotes_each_command(tmp_path):
    """--mode list as a user runs it: an override in the space form (``--config.f V``) reaches each
    point's command with its value, and a shell reads each command back as the same arguments."""
    workdir = str(tmp_path / "study runs")
    overrides = ["--config.train.num_epochs", "3", "--config.eval_flip", "--config.data.dir", "/data/fer plus"]
    spec = "configs/ablation_cbam.py:synthetic"
    proc = run_main("--config", spec, "--workdir", workdir, "--mode", "list", *overrides)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = proc.stdout.strip().splitlines()
    assert len(commands) == 6
    for i, command in enumerate(commands):
        assert shlex.split(command, comments=True) == [
            "python", "-m", "amobilenet_jax.main", "--config", spec, "--workdir", workdir, f"--sweep_index={i}",
            "--config.train.num_epochs=3", "--config.eval_flip", "--config.data.dir=/data/fer plus",
        ]  # fmt: skip
