"""Copies each finished study point into the repository: results.json, config.json (with this
machine's data paths cleared) and curve.json (Valid accuracy and mean per-class accuracy at each
evaluation, with wall-clock seconds since the first and since the run's TensorBoard writer
opened, i.e. after data preparation, before compilation; and training seconds counted up to
each, as the trainer counts them across resumes), never checkpoints. A point whose run counted
in ``train_time_s`` fewer training seconds than its logs do (resumed from a checkpoint written
before checkpoints carried the count) gets the logs' count there, its own kept beside it.

    python experiments/claims_at_convergence/harvest.py runs/converged/points [--out DIR]

The copies are enough for ``--mode table --points_dir experiments/claims_at_convergence/points``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from amobilenet_jax.files import write_json_atomic  # noqa: E402
from amobilenet_jax.summary_writer import read_events, read_scalars, scalar_log  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def writer_opened(run_dir: str) -> float | None:
    """When the run's newest event file was opened (its first record, the file-version event):
    after the data is prepared and the model built, before the train step compiles. The newest,
    so that an attempt killed before its first checkpoint (the run restarted from step 0) does
    not count."""
    files = sorted(f for f in os.listdir(run_dir) if f.startswith("events.out.tfevents"))
    first = next(read_events(os.path.join(run_dir, files[-1])), None) if files else None
    return None if first is None else float(first.wall_time)


def train_seconds(run_dir: str, eval_steps: list[int], images_per_step: int) -> list[float]:
    """Training seconds counted up to each evaluation, as the trainer counts them (evaluation
    excluded): each logged ``train/images_per_s`` covers the steps since the log before it, or
    since the checkpoint its attempt resumed from (the attempt's purge marker). Read from every
    attempt, the latest write of a step winning, so that the interval a killed attempt logged at
    its last checkpoint (purged from the curves, but trained) still counts; steps a killed attempt
    trained past its last log are not logged and do not count."""
    rates, resumes = {}, []
    for tag, step, value, _ in scalar_log(run_dir):
        if tag is None:  # an attempt resumed from ``step``
            resumes.append(step)
        elif tag == "train/images_per_s":
            rates[step] = value
    seconds, total, previous = {}, 0.0, 0
    for step in sorted(rates):
        # an attempt resumed from step S purges from S + 1 (from S before 2026-12-07: one step off)
        start = max([previous] + [r - 1 for r in resumes if r <= step])
        total += (step - start) * images_per_step / max(rates[step], 1e-9)
        seconds[step], previous = total, step
    at_eval = []
    for step in eval_steps:  # evaluations fall on logged steps; else the last log before them
        before = [s for s in seconds if s <= step]
        at_eval.append(seconds[max(before)] if before else 0.0)
    return at_eval


def curve(run_dir: str, resumed: bool = False, images_per_step: int | None = None) -> dict:
    scalars = read_scalars(run_dir, wall_time=True)
    acc = scalars.get("eval/valid_accuracy", [])
    mca = {step: value for step, value, _ in scalars.get("eval/valid_mean_class_accuracy", [])}
    start = acc[0][2] if acc else 0.0
    result = {
        "step": [int(s) for s, _, _ in acc],
        "valid_accuracy": [float(v) for _, v, _ in acc],
        "valid_mean_class_accuracy": [mca.get(s) for s, _, _ in acc],
        "wall_s_since_first_eval": [float(t - start) for _, _, t in acc],
    }
    if images_per_step:
        result["train_s"] = train_seconds(run_dir, result["step"], images_per_step)
    opened = writer_opened(run_dir)
    if opened is not None and not resumed:  # a resumed run's clock includes the time it was stopped
        result["wall_s_since_writer_opened"] = [float(t - opened) for _, _, t in acc]
    return result


def counted_by_logs(results: dict, run_dir: str, images_per_step: int) -> None:
    """A run resumed from a checkpoint written before checkpoints carried the training time
    counts in ``train_time_s`` only the attempts since: where the logs of every attempt count
    more up to the final step, that count replaces it (both undercount, never overcount: the
    logs miss only what a killed attempt trained past its last log), and ``train_time_s_results``
    keeps what the run wrote."""
    (seconds,) = train_seconds(run_dir, [results["final_step"]], images_per_step)
    if seconds > results.get("train_time_s", 0.0) * 1.01:
        results["train_time_s_results"] = results.get("train_time_s")
        results["train_time_s"] = seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("points_dir")
    parser.add_argument("--out", default=os.path.join(HERE, "points"))
    args = parser.parse_args()
    for name in sorted(os.listdir(args.points_dir)):
        run_dir = os.path.join(args.points_dir, name)
        if not os.path.exists(os.path.join(run_dir, "results.json")):
            continue
        out = os.path.join(args.out, name)
        if not any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir)):
            continue  # a committed point copied in by run.sh: the repository already holds it
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(run_dir, "results.json")) as f:
            results = json.load(f)
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
        config["data"]["dir"] = config["data"]["cache_dir"] = ""  # where this machine keeps the data
        resumed = bool(results.get("resumed_from_step"))
        points = curve(run_dir, resumed=resumed, images_per_step=config["train"]["batch_size"])
        counted_by_logs(results, run_dir, config["train"]["batch_size"])
        write_json_atomic(os.path.join(out, "results.json"), results)
        write_json_atomic(os.path.join(out, "config.json"), config)
        write_json_atomic(os.path.join(out, "curve.json"), points)
        print(f"harvested {name}")


if __name__ == "__main__":
    main()
