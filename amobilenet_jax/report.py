"""A study's report from its finished points: rows pooled over seeds (mean ± std, a paired
interval and a verdict against the reference point), as Markdown, LaTeX and CSV tables, and the
accuracy and Valid-curve figures."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

import numpy as np

from amobilenet_jax import statistics
from amobilenet_jax.errors import RunNotFoundError
from amobilenet_jax.files import write_atomic
from amobilenet_jax.recipes import SEED_KEY, group_key, point_name


def collect(dirs: list[str], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point group (seeds pooled), from the finished runs' results.json
    (``dirs[i]`` is point i's run directory)."""
    rows: dict[str, dict[str, Any]] = {}
    for overrides, run_dir in zip(points, dirs):
        path = os.path.join(run_dir, "results.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            result = json.load(f)
        key = point_name(group_key(overrides)) or "base"
        row = rows.setdefault(key, {"name": key, "overrides": group_key(overrides), "runs": [], "dirs": []})
        row["runs"].append({"seed": overrides.get(SEED_KEY), **result})
        row["dirs"].append(run_dir)
    table = []
    for row in rows.values():
        runs = row.pop("runs")
        acc = np.array([r["accuracy"] for r in runs], np.float64)
        classes = runs[0]["class_names"]
        per_class = {
            c: float(np.mean([r["per_class_accuracy"][c] for r in runs if r["per_class_accuracy"][c] is not None]))
            for c in classes
        }
        row.update(
            {
                "split": runs[0]["split"],
                "model": runs[0]["model"],
                "dataset": runs[0]["dataset"],
                "accuracy_mean": float(acc.mean()),
                "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "mean_class_accuracy": float(np.mean([r["mean_class_accuracy"] for r in runs])),
                "mean_class_accuracy_std": float(np.std([r["mean_class_accuracy"] for r in runs], ddof=1))
                if len(runs) > 1
                else 0.0,
                "seed_accuracy": statistics.seeds_table(runs),
                "per_class_accuracy": per_class,
                "params": runs[0]["params"],
                "flops": runs[0]["flops"],
                "train_time_s": float(np.mean([r["train_time_s"] for r in runs])),
                "seeds": len(runs),
            }
        )
        table.append(row)
    if table:
        best = max(range(len(table)), key=lambda i: table[i]["accuracy_mean"])
        for i, row in enumerate(table):
            row["best"] = i == best
    return table


# The paper's Tables 3 and 4 (accuracy %, parameters), for side-by-side columns.
PAPER_RESULTS = {
    "ferplus": {"mobilenet_v1": (85.40, "3.2M"), "mobilenet_v2": (77.18, "2.3M"),
                "mobilenet_v3_small": (73.24, "1.5M"), "amobilenet": (88.11, "3.4M")},
    "rafdb": {"mobilenet_v1": (81.62, "3.2M"), "mobilenet_v2": (67.77, "2.3M"),
              "mobilenet_v3_small": (68.29, "1.5M"), "amobilenet": (84.49, "3.4M")},
}  # fmt: skip


def _abbrev(names: list[str]) -> list[str]:
    return [n[:2].upper() for n in names]


COMPARISON_HEADER = ["Δ vs paper's model (points, 95% CI)", "verdict"]


def table_columns(table: list[dict[str, Any]], paper: bool) -> tuple[list[str], list[list[str]], list[dict]]:
    """Header, formatted cells and raw values (for CSV) of the ablation table."""
    classes = list(table[0]["per_class_accuracy"]) if table else []
    compared = any(row.get("reference") for row in table)
    header = ["run", "accuracy (%)", "mean class acc (%)"] + _abbrev(classes)
    header += ["params", "MFLOPs", "train time (s)", "seeds"]
    if compared:
        header += COMPARISON_HEADER
    if paper:
        header += ["paper acc (%)", "paper params"]
    cells, raw = [], []
    for row in table:
        mark = " *" if row["best"] else ""
        acc = f"{100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f}{mark}"
        mca = f"{100 * row['mean_class_accuracy']:.2f} ± {100 * row.get('mean_class_accuracy_std', 0.0):.2f}"
        line = [row["name"] + (" (paper's model)" if row.get("reference") else ""), acc, mca]
        line += [f"{100 * row['per_class_accuracy'][c]:.1f}" for c in classes]
        line += [f"{row['params']:,}", f"{row['flops'] / 1e6:,.1f}", f"{row['train_time_s']:.0f}", str(row["seeds"])]
        values = {
            "run": row["name"],
            "accuracy_mean": row["accuracy_mean"],
            "accuracy_std": row["accuracy_std"],
            "mean_class_accuracy": row["mean_class_accuracy"],
            **{f"acc_{c}": row["per_class_accuracy"][c] for c in classes},
            "params": row["params"],
            "flops": row["flops"],
            "train_time_s": row["train_time_s"],
            "seeds": row["seeds"],
            "best": row["best"],
            "split": row["split"],
            "mean_class_accuracy_std": row.get("mean_class_accuracy_std", 0.0),
        }
        if compared:
            d = row.get("difference")
            line += ["reference", "–"] if row.get("reference") else [statistics.describe(d), d.verdict if d else "–"]
            values.update(
                {
                    "reference": bool(row.get("reference")),
                    "diff_vs_reference": d.mean if d else None,
                    "diff_low": d.low if d else None,
                    "diff_high": d.high if d else None,
                    "comparison_test": d.test if d else None,
                    "verdict": ("reference" if row.get("reference") else d.verdict if d else None),
                }
            )
        if paper:
            reported = PAPER_RESULTS.get(row["dataset"], {}).get(row["model"])
            line += [f"{reported[0]:.2f}", reported[1]] if reported else ["–", "–"]
            values["paper_accuracy"] = reported[0] if reported else None
        cells.append(line)
        raw.append(values)
    return header, cells, raw


COMPARISON_NOTE = (
    "Δ is the row's accuracy minus the paper's model's, in points, with a 95% confidence interval: a paired t "
    "interval over the seeds both rows ran (a seed fixes the data order, the augmentation and dropout randomness "
    "and, for equal shapes, the initialisation), Welch's interval where they share none. The verdict reads the "
    "paper's claim that its model is more accurate: holds (the interval is below 0), does not hold (above 0), "
    "or cannot tell at this many seeds (it contains 0)."
)


def render_markdown(header, cells, caption: str) -> str:
    lines = [f"{caption}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    note = "`*` marks the best mean accuracy. Accuracy and mean per-class accuracy are mean ± std over seeds."
    if COMPARISON_HEADER[0] in header:
        note += " " + COMPARISON_NOTE
    return "\n".join(lines) + "\n\n" + note + "\n"


def render_latex(header, cells, caption: str) -> str:
    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
            text = text.replace(a, b)
        return text.replace("±", r"$\pm$").replace(" *", r"$^{*}$")

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{esc(caption)}}}",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(esc(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for row in cells:
        cells_tex = [esc(c) for c in row]
        if row[1].endswith(" *"):
            cells_tex[1] = r"\textbf{" + esc(row[1][:-2]) + "}"
        lines.append(" & ".join(cells_tex) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_csv(raw: list[dict]) -> str:
    buf = io.StringIO()
    if raw:
        writer = csv.DictWriter(buf, fieldnames=list(raw[0]))
        writer.writeheader()
        writer.writerows(raw)
    return buf.getvalue()


def compare_with(table: list[dict[str, Any]], reference: dict[str, Any] | None) -> None:
    """Marks the row whose overrides are ``reference`` (the paper's model) and gives every other
    row its ``difference`` to it (``statistics.compare``)."""
    ref = next((row for row in table if reference is not None and row["overrides"] == reference), None)
    for row in table:
        row["reference"] = row is ref
        if ref is not None and row is not ref:
            row["difference"] = statistics.compare(row["seed_accuracy"], ref["seed_accuracy"])


def write_tables(
    workdir: str,
    points: list[dict[str, Any]],
    title: str,
    paper: bool = False,
    dirs: list[str] | None = None,
    reference: dict[str, Any] | None = None,
) -> list[dict]:
    """Writes ``workdir/ablation.{md,csv,tex}``, ``ablation.png`` (accuracy per row) and
    ``curves.png`` (each row's Valid curve) from the points' runs (``dirs``, default
    ``workdir/<name>``); with ``reference`` (the paper's model's overrides), each row's difference
    to it with a 95% interval and a verdict. Returns the table rows."""
    dirs = dirs if dirs is not None else [os.path.join(workdir, point_name(p)) for p in points]
    table = collect(dirs, points)
    if not table:
        raise RunNotFoundError(f"{workdir}: no finished run of this sweep to tabulate")
    compare_with(table, reference)
    os.makedirs(workdir, exist_ok=True)
    split = table[0]["split"]
    caption = f"{title}: {table[0]['dataset']} {split} accuracy"
    header, cells, raw = table_columns(table, paper)
    write_atomic(os.path.join(workdir, "ablation.md"), render_markdown(header, cells, caption))
    write_atomic(os.path.join(workdir, "ablation.csv"), render_csv(raw))
    write_atomic(os.path.join(workdir, "ablation.tex"), render_latex(header, cells, caption))
    write_atomic(os.path.join(workdir, "ablation.png"), accuracy_figure(table, caption))
    write_atomic(os.path.join(workdir, "curves.png"), curves_figure(table, f"{title}: {table[0]['dataset']} {split}"))
    return table


def run_curve(run_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs, accuracy)`` of a run's evaluations: its ``curve.json`` (a harvested run) or
    its TensorBoard events."""
    path = os.path.join(run_dir, "curve.json")
    if os.path.exists(path):
        with open(path) as f:
            curve = json.load(f)
        steps, accuracy = curve["step"], curve[f"{split}_accuracy"]
    else:
        from amobilenet_jax.summary_writer import read_scalars

        scalars = read_scalars(run_dir).get(f"eval/{split}_accuracy", [])
        steps, accuracy = [s for s, _ in scalars], [v for _, v in scalars]
    with open(os.path.join(run_dir, "results.json")) as f:
        final_step = json.load(f)["final_step"]
    with open(os.path.join(run_dir, "config.json")) as f:
        epochs = json.load(f)["train"].get("num_epochs")
    scale = epochs / final_step if epochs and final_step else 1.0
    return np.asarray(steps, np.float64) * scale, np.asarray(accuracy, np.float64)


def curves_figure(table: list[dict], title: str) -> bytes:
    """Each row's evaluation accuracy against epochs: mean over seeds, the band from the lowest to the highest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    for i, row in enumerate(table):
        curves = [run_curve(d, row["split"]) for d in row["dirs"]]
        length = min(len(c[1]) for c in curves)
        if length == 0:
            continue
        x = curves[0][0][:length]
        ys = 100 * np.stack([c[1][:length] for c in curves])
        label = row["name"] + (" (paper's model)" if row.get("reference") else "")
        ax.plot(x, ys.mean(axis=0), marker=".", color=f"C{i}", label=f"{label} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=f"C{i}", alpha=0.2)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    return _finish_figure(fig, ax, title)


def _finish_figure(fig, ax, title: str) -> bytes:
    """The accuracy axis, title and grid of a study figure, as PNG bytes."""
    import matplotlib.pyplot as plt

    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def accuracy_figure(table: list[dict], title: str) -> bytes:
    """Accuracy against the swept value, with error bars (std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for row in table for k in row["overrides"]})
    numeric = len(keys) == 1 and all(isinstance(row["overrides"].get(keys[0]), (int, float)) for row in table)
    numeric = numeric and not any(isinstance(row["overrides"].get(keys[0]), bool) for row in table)
    mean = np.array([100 * row["accuracy_mean"] for row in table])
    std = np.array([100 * row["accuracy_std"] for row in table])
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(table) + 2), 3.5), dpi=100)
    if numeric:
        x = np.array([row["overrides"][keys[0]] for row in table], np.float64)
        order = np.argsort(x)
        positive = x[x > 0]
        ax.errorbar(x[order], mean[order], yerr=std[order], marker="o", capsize=4)
        if len(positive) > 1 and positive.max() / positive.min() > 20 and not np.any(x < 0):
            ax.set_xscale("symlog", linthresh=positive.min())
        ax.set_xlabel(keys[0])
    else:
        ax.bar(range(len(table)), mean, yerr=std, capsize=4, color=["C1" if r["best"] else "C0" for r in table])
        ax.set_xticks(range(len(table)), [row["name"] for row in table], rotation=30, ha="right", fontsize=8)
        lo = max(0.0, float(np.min(mean - std)) - 5)
        ax.set_ylim(lo, min(100.0, float(np.max(mean + std)) + 2))
    return _finish_figure(fig, ax, title)
