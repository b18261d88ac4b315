"""TensorBoard files of a run that was killed and resumed: ``read_scalars`` (the curves of
``curves.png`` and the study tables) reads them as TensorBoard does."""

import glob
import json
import os
import time

import pytest

from amobilenet_jax.summary_writer import TensorBoardWriter, read_scalars

TAG = "eval/valid_accuracy"


def _attempt(logdir, steps, purge_step=None):
    writer = TensorBoardWriter(logdir, purge_step=purge_step)
    for step in steps:
        writer.write_scalars(step, {TAG: step / 100})
    writer.close()
    time.sleep(1.1)  # event file names carry the second they were opened: the next attempt sorts after


@pytest.mark.parametrize("torn_bytes", [1, 30])
def test_a_killed_attempts_torn_record_ends_its_file_and_the_resumed_run_replaces_its_steps(tmp_path, torn_bytes):
    logdir = str(tmp_path)
    _attempt(logdir, range(1, 9))  # checkpoint at 4; killed while writing step 8's record
    (first,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    with open(first, "rb") as f:
        data = f.read()
    with open(first, "wb") as f:
        f.write(data[:-torn_bytes])
    _attempt(logdir, range(5, 13), purge_step=5)  # resumed from the checkpoint at step 4 (state.step 4 -> logs 5..)

    points = read_scalars(logdir)[TAG]
    assert [step for step, _ in points] == list(range(1, 13))  # each step once, none lost, no error
    assert points[6] == (7, pytest.approx(0.07))


def test_the_harvested_training_time_is_the_trainers_own_count(finished_run):
    """experiments/claims_at_convergence/harvest.py rebuilds the training seconds at each
    evaluation from the logged throughput; at the last one it is what results.json counted."""
    import importlib.util

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(repo, "experiments", "claims_at_convergence", "harvest.py")
    spec = importlib.util.spec_from_file_location("harvest", path)
    harvest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harvest)
    workdir, result = finished_run
    with open(os.path.join(workdir, "config.json")) as f:
        batch = json.load(f)["train"]["batch_size"]
    seconds = harvest.train_seconds(workdir, [8, result["final_step"]], batch)
    assert 0 < seconds[0] < seconds[1]
    assert seconds[1] == pytest.approx(result["train_time_s"], rel=1e-4)


def test_the_harvest_replaces_a_resumed_runs_undercounted_time(finished_run, tmp_path):
    """harvest.py, run as README's experiments run it: a point whose results.json counted only
    its last attempt (resumed from a checkpoint that did not carry the time) gets the logs' count
    of every attempt, the run's own figure kept beside it; a point that counted all is copied as is."""
    import shutil
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir, result = finished_run
    points = tmp_path / "points"
    for name, written in (("short", 1.0), ("whole", result["train_time_s"])):
        shutil.copytree(workdir, points / name, ignore=shutil.ignore_patterns("checkpoints"))
        with open(points / name / "results.json") as f:
            results = json.load(f)
        results["train_time_s"] = written
        with open(points / name / "results.json", "w") as f:
            json.dump(results, f)
    script = os.path.join(repo, "experiments", "claims_at_convergence", "harvest.py")
    proc = subprocess.run([sys.executable, script, str(points), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    harvested = {}
    for name in ("short", "whole"):
        with open(tmp_path / "out" / name / "results.json") as f:
            harvested[name] = json.load(f)
    assert harvested["short"]["train_time_s"] == pytest.approx(result["train_time_s"], rel=1e-4)
    assert harvested["short"]["train_time_s_results"] == 1.0
    assert harvested["whole"]["train_time_s"] == result["train_time_s"]
    assert "train_time_s_results" not in harvested["whole"]


def test_a_damaged_record_is_not_read_as_data(tmp_path):
    logdir = str(tmp_path)
    _attempt(logdir, range(1, 4))
    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[-6] ^= 0xFF  # a flipped byte inside the last record's payload: its CRC no longer matches
    with open(path, "wb") as f:
        f.write(bytes(data))
    assert [step for step, _ in read_scalars(logdir)[TAG]] == [1, 2]


def test_tensorboard_serves_a_finished_runs_scalars_over_http(finished_run, tmp_path):
    """README's ``tensorboard --logdir runs/``, after README's install: the TensorBoard that the
    install brings serves a finished run's curves, the values the run wrote."""
    import json
    import shutil
    import socket
    import subprocess
    import sys
    import urllib.request

    workdir, _ = finished_run
    logdir = tmp_path / "runs"
    shutil.copytree(workdir, logdir / "tiny", ignore=shutil.ignore_patterns("checkpoints"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen(
        [command, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=tiny&tag=train/loss"
    try:
        deadline, served = time.time() + 90, None
        while served is None and time.time() < deadline:
            assert server.poll() is None, server.stderr.read()[-2000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    served = json.loads(response.read())
            except (OSError, ValueError):
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    written = read_scalars(workdir)["train/loss"]
    assert served and [step for _, step, _ in served] == [step for step, _ in written]
    assert [value for _, _, value in served] == pytest.approx([value for _, value in written])
