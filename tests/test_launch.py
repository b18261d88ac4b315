"""--launch: a study as submitit tasks, each the point's own command. Local end to end (tasks run,
results land, a killed task resumes, the table is written); Slurm as the submission it would
make (scripts, array size, commands), with a stand-in `sbatch`."""

import glob
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time

import pytest
from absl import flags
from ml_collections import config_flags

from amobilenet_jax import launch, main, recipes, sweep
from amobilenet_jax.config import load_config_file
from tests.conftest import REPO
from tests.test_sweep import STUDY as FOUR_POINT_STUDY

MAIN = [sys.executable, "-m", "amobilenet_jax.main"]

# The tiny quickstart (16 steps, a checkpoint every 4) at two seeds.
TWO_SEEDS = """
import os, sys
sys.path.insert(0, {repo!r})
from amobilenet_jax.config import load_config_file
from amobilenet_jax.recipes import with_seeds


def get_config(variant=None):
    return load_config_file(os.path.join({repo!r}, "configs", "quickstart.py") + ":tiny")


def get_sweep(variant=None):
    return with_seeds([{{}}], (0, 1))
"""

# Loaded by every Python process of the test (PYTHONPATH): the run of --sweep_index=0 is killed
# (SIGKILL, as a lost node) inside its write of checkpoint 8, once; the marker file says it happened.
KILL_ONCE = """
import os, signal, sys

if os.environ.get("KILL_MARKER") and "--sweep_index=0" in sys.argv:
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def killing_finalize(self, *args, **kwargs):
        marker = os.environ["KILL_MARKER"]
        if os.path.basename(str(self.get_final())) == "8" and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return await finalize(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize
"""

SIGTERM_CHILD = """
import signal, sys, time
def stop(*_):
    open(sys.argv[1] + ".saved", "w").close()
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1] + ".started", "w").close()
time.sleep(60)
"""


def test_preempted_task_stops_its_run_and_is_requeued_as_the_same_command(tmp_path):
    """submitit calls ``checkpoint`` on USR2 (time limit, preemption): the run gets SIGTERM (it saves
    and exits) and the requeued task is the same command; only the command travels in the pickle."""
    flag = str(tmp_path / "child")
    task = launch.PointTask([sys.executable, "-c", SIGTERM_CHILD, flag])
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, task)))
    thread.start()
    deadline = time.time() + 60
    while not os.path.exists(flag + ".started") and time.time() < deadline:
        time.sleep(0.05)
    requeued = task.checkpoint()
    thread.join(60)
    assert os.path.exists(flag + ".saved")  # the child got SIGTERM and ran its handler
    assert "exited with code 143" in str(errors[0].value)
    assert isinstance(requeued.function, launch.PointTask) and requeued.function.command == task.command
    assert pickle.loads(pickle.dumps(task)).__dict__ == {"command": task.command, "_process": None}


def _task_logs(workdir: str) -> str:
    """The tasks' own logs, for a failure message: the launcher's output only names them."""
    tails = []
    for path in sorted(glob.glob(os.path.join(workdir, "launch", "*", "*_log.*"))):
        with open(path, errors="replace") as f:
            tails.append(f"--- {os.path.basename(path)}\n" + f.read()[-3000:])
    return "\n".join(tails)


def test_local_launch_runs_the_tasks_resumes_a_killed_one_and_tabulates(tmp_path):
    study = tmp_path / "study.py"
    study.write_text(TWO_SEEDS.format(repo=REPO))
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_ONCE)
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{REPO}", "KILL_MARKER": str(tmp_path / "killed")}
    workdir = str(tmp_path / "runs")
    args = [*MAIN, "--config", str(study), "--workdir", workdir, "--launch=local", "--launch_parallel=2"]

    first = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert os.path.exists(tmp_path / "killed"), first.stdout + first.stderr[-3000:]
    assert first.returncode == 1, first.stdout + first.stderr[-3000:]
    error = first.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: 1 of 2 tasks failed: 0 seed=0 (log "), first.stderr
    assert "run the same command again to resume" in error[0]
    assert "task 1 seed=1: done" in first.stdout and "task 0 seed=0: FAILED" in first.stdout
    assert os.path.exists(os.path.join(workdir, "seed=1", "results.json"))
    assert not os.path.exists(os.path.join(workdir, "seed=0", "results.json"))

    second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr[-3000:] + _task_logs(workdir)
    assert "[2/2] seed=1: finished, skipped" in second.stdout and "task 0 seed=0: done" in second.stdout
    with open(os.path.join(workdir, "launch.json")) as f:
        record = json.load(f)
    (task,) = record["tasks"]
    assert task["points"] == ["seed=0"] and "--sweep_index=0" in task["command"]
    with open(task["log"]) as f:
        log = f.read()
    assert "resuming from checkpoint at step 4" in log  # step 8 died in its write: 4 is the newest
    assert "final test accuracy" in log
    for seed in (0, 1):
        assert os.path.exists(os.path.join(workdir, f"seed={seed}", "results.json"))
    assert "| base |" in second.stdout  # the table, printed
    assert {"ablation.md", "ablation.csv", "ablation.tex", "curves.png"} <= set(os.listdir(workdir))


FAKE_SBATCH = """#!/bin/sh
n=$(ls "$SBATCH_RECORD" | wc -l)
cp "$1" "$SBATCH_RECORD/script_$n.sh"
echo "Submitted batch job $((4242 + n))"
"""


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it; the script would call it
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_RECORD", str(record))
    return record


def scripts(record):
    return [(record / f"script_{i}.sh").read_text() for i in range(len(os.listdir(record)))]


def test_slurm_launch_submits_one_array_task_per_point_and_a_table_job(tmp_path, fake_sbatch):
    study = tmp_path / "study.py"
    study.write_text(FOUR_POINT_STUDY.format(repo=REPO))
    workdir = str(tmp_path / "runs")
    args = ["--config", str(study), "--workdir", workdir, "--launch=slurm", "--partition=gpu", "--time_min=90",
            "--gpus_per_task=1", "--cpus_per_task=8", "--vectorize=false", "--config.train.num_steps=3"]  # fmt: skip
    proc = subprocess.run([*MAIN, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted Slurm array job 4242: 4 tasks; the tables follow as job 4243" in proc.stdout
    array, table = scripts(fake_sbatch)
    for line in ("--array=0-3%4", "--partition=gpu", "--time=90", "--gpus-per-task=1", "--cpus-per-task=8",
                 "--signal=USR2@120", "--job-name=amobilenet-study"):  # fmt: skip
        assert f"#SBATCH {line}\n" in array, array
    assert re.search(r"^srun .* -m submitit\.core\._submit ", array, re.M), array
    assert "#SBATCH --dependency=afterok:4242\n" in table and "--array" not in table and "gpus" not in table
    with open(os.path.join(workdir, "launch.json")) as f:
        record = json.load(f)
    assert record["launcher"] == "slurm" and record["array_job"] == "4242"
    assert [t["job_id"] for t in record["tasks"]] == [f"4242_{i}" for i in range(4)]
    for i, (task, point) in enumerate(zip(record["tasks"], sweep.load_sweep(str(study)))):
        assert task["points"] == [recipes.point_name(point)]
        assert task["command"][1:] == [
            "-m",
            "amobilenet_jax.main",
            "--config",
            str(study),
            "--workdir",
            workdir,
            f"--sweep_index={i}",
            "--vectorize=false",
            "--config.train.num_steps=3",
        ]
    assert record["table_job"]["command"][-2:] == ["--mode=table", "--config.train.num_steps=3"]
    assert not [d for d in os.listdir(workdir) if "=" in d]  # nothing trained here


def test_slurm_launch_on_gpus_submits_a_vectorised_group_as_one_task(tmp_path, fake_sbatch):
    study = tmp_path / "study.py"
    study.write_text(FOUR_POINT_STUDY.format(repo=REPO))
    spec, workdir = str(study), str(tmp_path / "runs")
    config, points = load_config_file(spec), sweep.load_sweep(spec)
    study = sweep.Study(config, spec, points, workdir)
    launch.launch("slurm", study, vectorize="auto", resources=launch.Resources(gpus_per_task=1))
    single, _ = scripts(fake_sbatch)
    assert "--array" not in single and "#SBATCH --gpus-per-task=1\n" in single
    with open(os.path.join(workdir, "launch.json")) as f:
        (task,) = json.load(f)["tasks"]
    assert task["command"][-2:] == ["--sweep_index=0,1,2,3", "--vectorize=true"] and len(task["points"]) == 4


def test_launch_needs_a_whole_study_and_sweep_index_takes_a_list(tmp_path):
    args = ["--config", "configs/quickstart.py:tiny", "--workdir", str(tmp_path), "--launch=local"]
    bad = subprocess.run([*MAIN, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--launch trains a whole study" in bad.stderr
    with pytest.raises(Exception, match="--sweep_index takes point numbers"):
        main._sweep_index(["1", "x"])
    assert main._sweep_index(["0", "2"]) == [0, 2]


def test_launched_tasks_keep_space_form_overrides(tmp_path):
    """The overrides main passes to each task, read from the command line as absl parsed it: the space
    form (``--config.f V``) keeps its value; a boolean's bare form does not take the next argument."""
    study = tmp_path / "study.py"
    study.write_text(FOUR_POINT_STUDY.format(repo=REPO))
    spec, workdir = str(study), str(tmp_path / "runs")
    argv = ["main", "--config", spec, "--workdir", workdir, "--launch", "slurm", "--config.train.num_steps", "3",
            "--config.eval_flip", "--noconfig.data.augment.flip", "--config.data.dir", "/data/fer plus"]  # fmt: skip
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
    flags.DEFINE_string("launch", None, "", flag_values=flag_values)
    assert flag_values(argv) == ["main"]
    extra = main.config_overrides(argv, flag_values)
    assert extra == ["--config.train.num_steps=3", "--config.eval_flip", "--noconfig.data.augment.flip",
                     "--config.data.dir=/data/fer plus"]  # fmt: skip
    study = sweep.Study(flag_values.config, spec, sweep.load_sweep(spec), workdir, extra_args=extra)
    tasks, _ = launch.plan(study, False)
    assert len(tasks) == 4
    for task in tasks:
        assert list(task.command[-len(extra) :]) == extra
        assert task.command[-len(extra) - 2 : -len(extra)] == (f"--sweep_index={task.indices[0]}", "--vectorize=false")
