"""A study past one machine: one task per point (or per vectorised group) through submitit.

    python -m amobilenet_jax.main --config configs/ablation_cbam.py:converged --workdir runs/cbam \\
        --launch=slurm --partition=gpu --time_min=240 --gpus_per_task=1
    python -m amobilenet_jax.main --config configs/ablation_cbam.py:converged --workdir runs/cbam --launch=local

Each task runs the point's own command, the one ``--mode list`` prints
(``--sweep_index=I``, or ``--sweep_index=I,J,...`` for a vectorised group), so everything a
single run does holds for a task: it checkpoints, and run again it resumes. Launching a study
again submits only its unfinished points.

- ``local``: submitit's local executor on this machine, ``--launch_parallel`` tasks at a time
  (default 1: on a CPU one run already uses every core). It waits for every task, then writes
  the study's tables; a task that failed is named with its log, and the same command resumes it.
- ``slurm``: one array job (one element per task) and, after it, a job that writes the tables
  (``--dependency=afterok``). It returns once submitted; ``launch.json`` in the study's
  workdir records the jobs, their commands and logs.

Preemption and time limits: submitit signals a task (USR2) before Slurm stops it; the task
forwards SIGTERM to its run, which saves a checkpoint and exits, and submitit requeues the task,
which resumes from that checkpoint. (submitit hands the task to the node as a pickle of
``PointTask``: a command line, written and read by submitit itself in the job folder.)
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import submitit

from amobilenet_jax import recipes, sweep
from amobilenet_jax.config import validate
from amobilenet_jax.errors import UserError
from amobilenet_jax.files import write_json_atomic

LAUNCHERS = ("none", "local", "slurm")


class TaskFailed(UserError, RuntimeError):
    """One or more launched tasks ended with an error; the same command resumes them."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One job: the sweep points it trains (one, or a vectorised group) and its command line."""

    indices: tuple[int, ...]
    names: tuple[str, ...]
    command: tuple[str, ...]

    @property
    def label(self) -> str:
        return "+".join(str(i) for i in self.indices) + " " + ", ".join(self.names)


class PointTask(submitit.helpers.Checkpointable):
    """What a submitit job runs: a command line, in a child process.

    On preemption or a time limit submitit calls ``checkpoint``: the child gets SIGTERM (the
    run saves a checkpoint and exits), and the same command is requeued, which resumes it.
    """

    def __init__(self, command: Sequence[str]):
        self.command = list(command)
        self._process: subprocess.Popen | None = None

    def __call__(self) -> int:
        sys.stdout.write(f"$ {shlex.join(self.command)}\n")
        sys.stdout.flush()
        self._process = subprocess.Popen(self.command)
        try:
            code = self._process.wait()
        except KeyboardInterrupt:  # the job was cancelled: the run saves and stops, as on Ctrl-C
            self._stop(signal.SIGINT)
            raise
        if code != 0:
            raise RuntimeError(f"the command exited with code {code}: {shlex.join(self.command)}")
        return code

    def _stop(self, sig: int) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(sig)
            self._process.wait()

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        self._stop(signal.SIGTERM)
        return submitit.helpers.DelayedSubmission(PointTask(self.command))

    def __getstate__(self) -> dict[str, Any]:
        return {"command": self.command}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.command, self._process = state["command"], None


def main_command(spec: str, workdir: str, *args: str) -> list[str]:
    """``python -m amobilenet_jax.main --config SPEC --workdir W ...`` with absolute paths, so a
    node that starts in another directory runs the same thing."""
    path, sep, variant = spec.partition(":")
    spec = os.path.abspath(path) + sep + variant
    return [sys.executable, "-m", "amobilenet_jax.main", "--config", spec, "--workdir", os.path.abspath(workdir), *args]


def plan(study: sweep.Study, vectorize: bool) -> tuple[list[Task], list[int]]:
    """The tasks that train the study's unfinished points, and the indices of the finished ones."""
    from amobilenet_jax import vectorized

    points, points_dir = study.points, study.points_dir
    configs = [sweep.apply_overrides(study.config, p) for p in points]
    for c in configs:
        validate(c)
    names = [recipes.point_name(p) for p in points]
    dirs = [sweep.point_dir(points_dir or study.workdir, c, n) for c, n in zip(configs, names)]
    todo = [i for i in range(len(points)) if not sweep.is_finished(dirs[i], configs[i])]
    finished = [i for i in range(len(points)) if i not in todo]
    groups = [[i] for i in todo]
    if vectorize and len(todo) > 1:
        groups = [[todo[j] for j in group] for group in vectorized.group_points([configs[i] for i in todo])]
    tail = [f"--points_dir={os.path.abspath(points_dir)}"] if points_dir else []
    tasks = []
    for group in groups:
        args = [f"--sweep_index={','.join(map(str, group))}", f"--vectorize={'true' if len(group) > 1 else 'false'}"]
        command = main_command(study.spec, study.workdir, *args, *tail, *study.extra_args)
        tasks.append(Task(tuple(group), tuple(names[i] for i in group), tuple(command)))
    return tasks, finished


def _record(workdir: str, launcher: str, tasks: list[Task], jobs: list[Any], **more: Any) -> str:
    path = os.path.join(workdir, "launch.json")
    entries = [
        {"points": list(t.names), "sweep_index": list(t.indices), "command": list(t.command),
         "job_id": str(j.job_id), "log": str(j.paths.stdout)}
        for t, j in zip(tasks, jobs)
    ]  # fmt: skip
    write_json_atomic(path, {"launcher": launcher, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "tasks": entries, **more})  # fmt: skip
    return path


def run_local(tasks: list[Task], workdir: str, parallel: int = 1, time_min: int = 24 * 60) -> None:
    """Runs the tasks through submitit's local executor, ``parallel`` at a time, and waits for them.
    Raises ``TaskFailed`` naming each failed task and its log."""
    executor = submitit.LocalExecutor(folder=os.path.join(workdir, "launch", "%j"))
    executor.update_parameters(timeout_min=time_min)
    pending, running, failed, jobs = list(tasks), [], [], []
    started = time.time()
    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                task = pending.pop(0)
                job = executor.submit(PointTask(task.command))
                jobs.append((task, job))
                running.append((task, job, time.time()))
                print(f"task {task.label}: started (job {job.job_id}, log {job.paths.stdout})", flush=True)
                _record(workdir, "local", [t for t, _ in jobs], [j for _, j in jobs])
            time.sleep(0.5)
            for entry in list(running):
                task, job, t0 = entry
                if not job.done():
                    continue
                running.remove(entry)
                error = job.exception()
                if error is None:
                    print(f"task {task.label}: done in {time.time() - t0:.0f} s", flush=True)
                else:
                    failed.append((task, job))
                    print(f"task {task.label}: FAILED after {time.time() - t0:.0f} s, log {job.paths.stdout}",
                          flush=True)  # fmt: skip
    except KeyboardInterrupt:
        for _, job, _ in running:
            job.cancel(check=False)  # SIGINT: each run saves a checkpoint and stops
        raise
    print(f"{len(tasks)} tasks in {time.time() - started:.0f} s, {len(failed)} failed", flush=True)
    if failed:
        names = "; ".join(f"{t.label} (log {j.paths.stdout})" for t, j in failed)
        raise TaskFailed(f"{len(failed)} of {len(tasks)} tasks failed: {names}; run the same command again to resume")


@dataclasses.dataclass(frozen=True)
class Resources:
    """What each task gets: ``--partition``, ``--time_min``, ``--gpus_per_task``, ``--cpus_per_task``
    (Slurm) and ``--launch_parallel`` (tasks at once; None: 1 locally, 256 on Slurm)."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    parallel: int | None = None


def submit_slurm(
    tasks: list[Task], workdir: str, table_command: list[str], resources: Resources, job_name: str = "amobilenet"
) -> dict[str, Any]:
    """Submits the tasks as one Slurm array job and, after it succeeds, the table job. Returns what
    ``launch.json`` records."""
    folder = os.path.join(workdir, "launch", "%j")
    params: dict[str, Any] = {"time": resources.time_min, "job_name": job_name, "signal_delay_s": 120}
    if resources.partition:
        params["partition"] = resources.partition
    if resources.gpus_per_task:
        params["gpus_per_task"] = resources.gpus_per_task
    if resources.cpus_per_task:
        params["cpus_per_task"] = resources.cpus_per_task
    parallel = resources.parallel or 256
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise UserError("--launch=slurm needs Slurm's sbatch and srun on PATH (run it on the cluster's login node)")
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**params, array_parallelism=max(1, parallel))
    jobs = executor.submit_array([PointTask(t.command) for t in tasks])
    array_id = str(jobs[0].job_id).split("_")[0]
    table = submitit.SlurmExecutor(folder=folder)
    table_params = {k: v for k, v in params.items() if k in ("partition", "job_name", "signal_delay_s")}
    table.update_parameters(**table_params, time=30, additional_parameters={"dependency": f"afterok:{array_id}"})
    table_job = table.submit(PointTask(table_command))
    more = {"array_job": array_id, "table_job": {"job_id": str(table_job.job_id), "command": table_command,
                                                 "log": str(table_job.paths.stdout)}}  # fmt: skip
    path = _record(workdir, "slurm", tasks, jobs, **more)
    print(f"submitted Slurm array job {array_id}: {len(tasks)} tasks; the tables follow as job {table_job.job_id}"
          f" (after all succeed); jobs, commands and logs in {path}", flush=True)  # fmt: skip
    return more


def launch(launcher: str, study: sweep.Study, vectorize: str = "auto", resources: Resources = Resources()) -> None:
    """``--launch=local|slurm``: the study's unfinished points as tasks; local waits and tabulates."""
    if launcher not in LAUNCHERS[1:]:
        raise ValueError(f"--launch must be one of {LAUNCHERS}, got {launcher!r}")
    if launcher == "slurm":  # the tasks run on the cluster's accelerators, not on this machine
        vectorize_tasks = vectorize == "true" or (vectorize == "auto" and resources.gpus_per_task > 0)
    else:
        import jax

        vectorize_tasks = sweep.resolve_vectorize(vectorize, jax.default_backend())
    tasks, finished = plan(study, vectorize_tasks)
    spec, points, workdir, points_dir = study.spec, study.points, study.workdir, study.points_dir
    for i in finished:
        print(f"[{i + 1}/{len(points)}] {recipes.point_name(points[i])}: finished, skipped", flush=True)
    os.makedirs(workdir, exist_ok=True)
    table_args = ["--mode=table", *([f"--points_dir={os.path.abspath(points_dir)}"] if points_dir else [])]
    table_command = main_command(spec, workdir, *table_args, *study.extra_args)
    if launcher == "slurm":
        if not tasks:
            print("every point is finished: nothing to submit; --mode table writes the tables", flush=True)
            return
        name = "amobilenet-" + os.path.basename(spec.partition(":")[0]).removesuffix(".py")
        submit_slurm(tasks, workdir, table_command, resources, name)
        return
    if tasks:
        run_local(tasks, workdir, resources.parallel or 1, resources.time_min)
    sweep.tabulate(study)
