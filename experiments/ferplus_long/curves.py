"""Valid curves of the long recipe's points against epochs and wall hours, and their table.

    python experiments/ferplus_long/curves.py [POINT_DIR ...] --out experiments/ferplus_long/screen.png

Each POINT_DIR is a point harvested into the repository (default: every one under
experiments/ferplus_long/points/): its ``curve.json`` (Valid accuracy at each evaluation; the
training seconds counted up to each, across resumes, where the harvest had the run's event
files, else the wall seconds since its TensorBoard writer opened, evaluations included, absent
for a resumed run) and ``results.json`` (the final evaluation). The per-epoch evaluations vote over the whole image and
its mirror; the final one (a separate marker) over the 12 views of ``eval_crops`` where the
point's config sets it.
Prints one markdown row per point.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PLAIN_EPOCH_STEPS = 442  # configs/ferplus_long.py: one pass over FERPlus Train at batch 64


def load(point: str) -> tuple[dict, dict]:
    with open(os.path.join(point, "curve.json")) as f:
        curve = json.load(f)
    with open(os.path.join(point, "results.json")) as f:
        results = json.load(f)
    return curve, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("points", nargs="*", help="harvested point directories (default: all under points/)")
    parser.add_argument("--out", default=os.path.join(HERE, "screen.png"))
    args = parser.parse_args()
    points = args.points or sorted(p for p in glob.glob(os.path.join(HERE, "points", "*")) if os.path.isdir(p))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_hour) = plt.subplots(1, 2, figsize=(11, 5.6), dpi=110, sharey=True)
    print("| point | final Valid (%) | views | mean per-class (%) | best per-epoch, 2 views (%) at epoch | hours |")
    print("|---|---|---|---|---|---|")
    for point in points:
        curve, results = load(point)
        name = os.path.basename(point)
        final = results["final_step"]
        # the per-epoch evaluations (two views); the final evaluation is results.json's
        steps = [s for s in curve["step"] if s != final] or curve["step"]
        accuracy = [100 * a for s, a in zip(curve["step"], curve["valid_accuracy"]) if s in steps]
        epochs = [s / PLAIN_EPOCH_STEPS for s in steps]
        (line,) = by_epoch.plot(epochs, accuracy, marker=".", lw=1, label=name)
        color = line.get_color()
        by_epoch.plot([final / PLAIN_EPOCH_STEPS], [100 * results["accuracy"]], marker="*", ms=10, color=color)
        hours = curve.get("train_s") or curve.get("wall_s_since_writer_opened")
        if hours:
            hours = [h / 3600 for s, h in zip(curve["step"], hours) if s in steps]
            style = "-" if curve.get("train_s") else ":"
            by_hour.plot(hours, accuracy, style, marker=".", lw=1, color=color)
        best = max(range(len(accuracy)), key=accuracy.__getitem__)
        # the count across resumes where the harvest had it (results.json of a run resumed from a
        # checkpoint older than the count it carries holds its last attempt's time only)
        seconds = curve["train_s"][-1] if curve.get("train_s") else results.get("train_time_s")
        spent = f"{seconds / 3600:.2f}" if seconds else ""
        with open(os.path.join(point, "config.json")) as f:
            views = 12 if json.load(f).get("eval_crops") else 2
        print(f"| {name} | {100 * results['accuracy']:.2f} | {views} | {100 * results['mean_class_accuracy']:.2f} | "
              f"{accuracy[best]:.2f} ({epochs[best]:.1f}) | {spent} |")  # fmt: skip
    by_epoch.set_xlabel("plain epochs (442 steps of 64)")
    by_hour.set_xlabel("training hours counted (dotted: wall hours, evaluations included)")
    by_epoch.set_ylabel("FERPlus Valid accuracy (%)")
    fig.suptitle("per-epoch evaluations on 2 views; * the final evaluation (12 views where eval_crops=5)", fontsize=9)
    for ax in (by_epoch, by_hour):
        ax.grid(alpha=0.3)
    fig.legend(*by_epoch.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    fig.savefig(args.out)


if __name__ == "__main__":
    main()
