"""Faults a real run meets, met through the command line as a user runs it (subprocesses):
kill -9 inside a checkpoint write, SIGTERM and SIGINT, a diverging loss, typos in the config,
evaluation from the run directory alone, a bad image. (``--vectorize=true`` is test_vectorized.py's.)"""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

MAIN = [sys.executable, "-m", "amobilenet_jax.main"]
# 32 steps (4 epochs of 8), a checkpoint every 4: room to be interrupted in many places.
RUN = ["--config", "configs/quickstart.py:tiny", "--config.train.num_epochs=4"]

# Runs amobilenet_jax.main with Orbax's final rename of checkpoint step $KILL_AT_STEP replaced
# by a SIGKILL: the process dies with that step fully written to its temporary directory.
KILL_IN_WRITE = """
import os, runpy, signal, sys
from orbax.checkpoint._src.path import atomicity

finalize = atomicity.AtomicRenameTemporaryPath.finalize

async def killing_finalize(self, *args, **kwargs):
    if os.path.basename(str(self.get_final())) == os.environ["KILL_AT_STEP"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return await finalize(self, *args, **kwargs)

atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize
sys.argv = ["amobilenet_jax.main", *sys.argv[1:]]
runpy.run_module("amobilenet_jax.main", run_name="__main__")
"""


def run(*args, env=None, timeout=600):
    return subprocess.run([*MAIN, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def run_until(args, line_prefix: str, sig: int) -> subprocess.CompletedProcess:
    """Starts main, sends ``sig`` as soon as it prints a line starting with ``line_prefix``."""
    proc = subprocess.Popen([*MAIN, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(line_prefix):
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + out, err)


def results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must end equal to."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    proc = run(*RUN, "--workdir", workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The console tells the story: progress lines, and a line after each evaluation.
    assert "step 32/32 epoch 4.00 loss" in proc.stdout and "img/s ETA" in proc.stdout
    for epoch in (1, 2, 3, 4):
        assert re.search(rf"^epoch {epoch} test accuracy [0-9.]+ mean per class [0-9.]+ best [0-9.]+ \(epoch \d\)$",
                         proc.stdout, re.M), proc.stdout  # fmt: skip
    return workdir, results(workdir)


def test_every_interruption_resumes_to_the_uninterrupted_result(reference, tmp_path):
    """SIGTERM, kill -9 mid checkpoint write, SIGINT: each followed by the same command, and the
    run ends with the uninterrupted run's parameters and metrics. (A kill -9 between saves is
    the easier case of the one inside a save: the newest checkpoint is complete.)"""
    _, expected = reference
    workdir = str(tmp_path / "run")
    args = [*RUN, "--workdir", workdir]

    # Preemption: a checkpoint at the step it was at, exit 128 + 15, one line saying how to resume.
    term = run_until(args, "step 8/32", signal.SIGTERM)
    assert term.returncode == 128 + signal.SIGTERM, term.stderr[-3000:]
    line = one_line_error(term)
    assert "stopped by SIGTERM at step" in line and "run the same command again to resume" in line
    stopped_at = int(line.split("at step ")[1].split("/")[0])
    assert str(stopped_at) in os.listdir(os.path.join(workdir, "checkpoints"))

    # kill -9 inside the write of step 24: its temporary directory stays, step 20 is the newest.
    env = {**os.environ, "KILL_AT_STEP": "24"}
    in_write = subprocess.run(
        [sys.executable, "-c", KILL_IN_WRITE, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600
    )
    assert in_write.returncode == -signal.SIGKILL, in_write.stderr[-3000:]
    assert f"resuming from checkpoint at step {stopped_at}" in in_write.stdout
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    assert "24" not in names and "20" in names and any("tmp" in n for n in names), names

    # Ctrl-C, then the last resume runs to the end.
    interrupted = run_until(args, "step 28/32", signal.SIGINT)
    assert interrupted.returncode == 128 + signal.SIGINT, interrupted.stderr[-3000:]
    assert "resuming from checkpoint at step 20" in interrupted.stdout
    assert "stopped by SIGINT" in one_line_error(interrupted)
    final = run(*args)
    assert final.returncode == 0, final.stderr[-3000:]
    got = results(workdir)
    assert not any("tmp" in n for n in os.listdir(os.path.join(workdir, "checkpoints")))  # swept up
    assert got["final_step"] == expected["final_step"] == 32
    assert got["params_fingerprint"] == expected["params_fingerprint"]
    for key in ("accuracy", "mean_class_accuracy", "confusion_matrix", "per_class_accuracy"):
        assert got[key] == expected[key], key


def test_eval_takes_the_run_directory_as_the_source_of_truth(reference, tmp_path):
    workdir, expected = reference
    alone = run("--workdir", workdir, "--mode", "eval")  # no --config: RUN/config.json
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert json.loads(alone.stdout.strip().splitlines()[-1])["accuracy"] == expected["accuracy"]
    # Fields that change no result may differ; the cache directory is among them.
    other = run(
        "--workdir", workdir, "--mode", "eval", "--config.eval_split=train", f"--config.data.cache_dir={tmp_path}"
    )
    assert other.returncode == 0, other.stderr[-3000:]
    assert json.loads(other.stdout.strip().splitlines()[-1])["split"] == "train"
    # Fields that define the experiment may not: one line naming them, before any data is read.
    wrong = run("--workdir", workdir, "--mode", "eval", "--config.model.width=0.5", "--config.seed=3")
    line = one_line_error(wrong)
    assert "another experiment: model.width (0.25 -> 0.5), seed (0 -> 3) differ" in line


def test_a_diverging_run_stops_at_the_step_and_names_the_last_good_checkpoint(tmp_path):
    import orbax.checkpoint as ocp

    workdir = str(tmp_path / "diverge")
    proc = run("--config", "configs/quickstart.py:diverge", "--workdir", workdir)
    line = one_line_error(proc)
    assert "non-finite loss or gradient at step 2" in line
    assert f"the last good checkpoint is {os.path.join(workdir, 'checkpoints', '1')}" in line
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    assert mngr.all_steps() == [1]
    saved = mngr.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    leaves = [np.asarray(x) for x in __import__("jax").tree.leaves(saved) if np.asarray(x).dtype.kind == "f"]
    assert leaves and all(np.all(np.isfinite(x)) for x in leaves)
    mngr.close()


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--config.model.name=mobilenet_v4"], "config: model.name='mobilenet_v4' is not one of 'amobilenet', "),
        (["--config.data.name=affectnet"], "config: data.name='affectnet' is not one of "),
        (["--config.model.depthwise_impl=fast"], "config: model.depthwise_impl='fast' is not one of 'xla', "),
        (["--config.data.balance=undersample"], "config: data.balance='undersample' is not one of 'none', "),
        (["--config.train.batch_size=0"], "config: train.batch_size=0 must be positive"),
        (["--config.train.batch_sise=8"], "no config field 'batch_sise' (did you mean \"batch_size\"?)"),
        (["--config.nosuch=1"], "no config field 'nosuch'"),
        (["--config.train.batch_size=8.5"], "--config.train.batch_size=8.5"),
    ],
)
def test_config_mistakes_are_one_line_before_any_work(args, expected, tmp_path):
    workdir = str(tmp_path / "never")
    proc = run("--config", "configs/quickstart.py:tiny", "--workdir", workdir, *args)
    assert expected in one_line_error(proc)
    assert not os.path.exists(workdir)


def test_a_misspelt_field_in_a_config_file_is_one_line(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text(
        "from amobilenet_jax.config import base_config\n\n\n"
        "def get_config(variant=None):\n    c = base_config()\n    c.train.num_epoch = 3\n    return c\n"
    )
    proc = run("--config", str(path), "--mode", "summary")
    assert "no config field 'num_epoch' (did you mean \"num_epochs\"?)" in one_line_error(proc)


def test_bad_training_image_stops_the_run_or_is_skipped(tmp_path):
    """One truncated PNG in FERPlus train: one line naming it, or with data.on_error=skip a run
    that says what it skipped and records the count in results.json."""
    from tests import fixtures

    data_dir, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    train = fixtures.write_ferplus_folders(data_dir, sizes={"train": 96, "valid": 24})["splits"]["train"]
    i = int(np.flatnonzero(train["majority"] >= 0)[0])  # an image the label rule keeps
    png = os.path.join(train["dir"], train["names"][i])
    with open(png, "rb") as f:
        data = f.read()
    with open(png, "wb") as f:
        f.write(data[: len(data) // 2])
    args = [
        *("--config", "configs/ferplus.py:runlocal", f"--config.data.dir={data_dir}"),
        *(f"--config.data.cache_dir={cache_dir}", "--config.data.image_size=32", "--config.train.batch_size=16"),
        "--config.train.num_steps=4",
    ]
    stopped = run(*args, "--workdir", str(tmp_path / "raise"))
    line = one_line_error(stopped)
    assert f"{os.path.join(train['dir'], 'label.csv')}:{i + 1}:" in line and png in line
    assert not os.path.exists(cache_dir) or not os.listdir(cache_dir)  # nothing half-prepared
    workdir = str(tmp_path / "skip")
    skipped = run(*args, "--config.data.on_error=skip", "--workdir", workdir)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "ferplus: skipped 1 bad item (data.on_error=skip):" in skipped.stdout
    assert results(workdir)["skipped_items"] == 1
