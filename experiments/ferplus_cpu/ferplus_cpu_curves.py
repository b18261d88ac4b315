"""Valid accuracy against wall-clock minutes for the FERPlus CPU runs: experiments/ferplus_cpu/ferplus_cpu.png.

    python experiments/ferplus_cpu/ferplus_cpu_curves.py LABEL=RUN_DIR@START_EPOCH_SECONDS ... \\
        LABEL=POINT_DIR ... --out experiments/ferplus_cpu/ferplus_cpu.png

START is when the command was started (``date +%s``), so the minutes include data preparation
and compilation. A POINT_DIR without ``@`` is a point harvested into the repository
(``experiments/claims_at_convergence/harvest.py``): its ``curve.json`` counts the minutes from
when the run's TensorBoard writer opened (compilation included, the few seconds of data
preparation not). Prints one markdown row per run: label, final and best Valid accuracy,
mean per-class accuracy, and the minutes at which each was reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from amobilenet_jax.summary_writer import read_scalars  # noqa: E402


def read_curve(spec: str) -> tuple[list, list, list, list]:
    """Steps, Valid accuracy (%), mean per-class accuracy (%) and wall minutes of one run."""
    if "@" not in spec:
        with open(os.path.join(spec, "curve.json")) as f:
            curve = json.load(f)
        if "wall_s_since_writer_opened" not in curve:
            raise SystemExit(f"{spec}/curve.json: no wall_s_since_writer_opened (a resumed run): give RUN_DIR@START")
        return (
            curve["step"],
            [100 * v for v in curve["valid_accuracy"]],
            [100 * v for v in curve["valid_mean_class_accuracy"]],
            [t / 60 for t in curve["wall_s_since_writer_opened"]],
        )
    run_dir, start = spec.rsplit("@", 1)
    scalars = read_scalars(run_dir, wall_time=True)
    acc = scalars["eval/valid_accuracy"]
    mca = {step: value for step, value, _ in scalars["eval/valid_mean_class_accuracy"]}
    return (
        [s for s, _, _ in acc],
        [100 * v for _, v, _ in acc],
        [100 * mca[s] for s, _, _ in acc],
        [(t - float(start)) / 60 for _, _, t in acc],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR@START_EPOCH_SECONDS or LABEL=POINT_DIR")
    parser.add_argument("--out", default="experiments/ferplus_cpu/ferplus_cpu.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    print("| run | final Valid acc (%) | best (%) | mean per-class at best (%) | minutes to best | minutes in all |")
    print("|---|---|---|---|---|---|")
    for spec in args.runs:
        label, rest = spec.split("=", 1)
        steps, values, mcas, minutes = read_curve(rest)
        ax.plot(minutes, values, marker=".", label=label)
        best = max(range(len(values)), key=lambda i: values[i])
        print(f"| {label} | {values[-1]:.2f} | {values[best]:.2f} | {mcas[best]:.2f} | "
              f"{minutes[best]:.1f} | {minutes[-1]:.1f} |")  # fmt: skip
    ax.set_xlabel("wall-clock minutes (preparation and compilation included)")
    ax.set_ylabel("FERPlus Valid accuracy (%)")
    ax.axhline(84.0, color="gray", ls="--", lw=0.8)
    ax.axhline(80.0, color="gray", ls=":", lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)


if __name__ == "__main__":
    main()
