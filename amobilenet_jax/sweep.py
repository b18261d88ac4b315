"""Sweeps: a config file's ablation study expanded into points, run, and tabulated.

A config file may define ``get_sweep(variant)`` returning a list of override dicts
(``{"model.cbam": False, "seed": 1}``, built with ``recipes.product`` and ``with_seeds``); each
point is the base config plus its overrides, run into ``<workdir>/<run name>/`` where the run name reads
``cbam=False,seed=1``. Finished points are skipped, interrupted ones resume.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shlex
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from amobilenet_jax import statistics
from amobilenet_jax.config import config_differences, flatten, validate
from amobilenet_jax.errors import ConfigError, RunNotFoundError
from amobilenet_jax.files import read_json, write_atomic
from amobilenet_jax.recipes import SEED_KEY


class SweepKeyError(ConfigError, KeyError):
    """A sweep point overrides a field the config does not have."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


def _config_module(config_spec: str):
    path = config_spec.partition(":")[0]
    spec = importlib.util.spec_from_file_location("_amobilenet_sweep_" + os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_reference(config_spec: str) -> dict[str, Any] | None:
    """The overrides (without seed) of the study's row that is the paper's model: the config
    file's ``get_reference(variant)``, or None when it names none (no comparison column)."""
    module = _config_module(config_spec)
    variant = config_spec.partition(":")[2] or None
    return module.get_reference(variant) if hasattr(module, "get_reference") else None


def load_sweep(config_spec: str) -> list[dict[str, Any]] | None:
    """The sweep a config file defines (``get_sweep(variant)``), or None if it has none
    (no ``get_sweep``, or one that returns None for this variant: a single run)."""
    module = _config_module(config_spec)
    variant = config_spec.partition(":")[2] or None
    points = module.get_sweep(variant) if hasattr(module, "get_sweep") else None
    return None if points is None else [dict(point) for point in points]


def _format_value(value: Any) -> str:
    """A value in a run directory's name: a list joined by ``-``, a path by its last part (no ``/``)."""
    if isinstance(value, (tuple, list)):
        return "-".join(_format_value(v) for v in value)
    return os.path.basename(os.path.normpath(value)) if isinstance(value, str) and "/" in value else str(value)


def point_name(overrides: dict[str, Any]) -> str:
    """``cbam=False,seed=1``: the last part of each key, unless two keys share it."""
    leaves = [key.rsplit(".", 1)[-1] for key in overrides]
    names = [leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(overrides, leaves)]
    return ",".join(f"{name}={_format_value(v)}" for name, v in zip(names, overrides.values()))


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """A copy of ``config`` with dotted-key overrides; an unknown key is an error."""
    point = config.copy_and_resolve_references()
    for key, value in overrides.items():
        node = point
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise SweepKeyError(f"sweep override {key!r} names no config field")
        try:
            node[leaf] = tuple(value) if isinstance(value, list) else value
        except (TypeError, ValueError) as e:
            raise ConfigError(f"sweep override {key}={value!r}: {e}") from None
    point.lock()
    return point


def group_key(overrides: dict[str, Any]) -> dict[str, Any]:
    """The point's overrides without the seed: points equal here are one table row."""
    return {k: v for k, v in overrides.items() if k != SEED_KEY}


# Free fields (config.FREE_FIELDS) that still change what a finished run reports.
REPORT_FIELDS = ("eval_split", "eval_flip", "eval_crops", "eval_crop_zoom", "train.num_epochs", "train.num_steps")
# A run's config.json from before a report field existed holds its default.
REPORT_DEFAULTS = {"eval_crops": 0, "eval_crop_zoom": 0.9}


def same_experiment(saved: dict, current: dict) -> bool:
    """True when a run with config ``saved`` is this point's run: every field that defines the
    experiment or its reported result is equal (where the data lies, how often it logs... may differ)."""
    old, new = flatten(saved), flatten(current)
    return not config_differences(saved, current) and all(
        old.get(k, REPORT_DEFAULTS.get(k)) == new.get(k, REPORT_DEFAULTS.get(k)) for k in REPORT_FIELDS
    )


def is_finished(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """True when ``workdir`` holds results of a run of this point (``same_experiment``)."""
    saved = read_json(os.path.join(workdir, "config.json"))
    if saved is None or not os.path.exists(os.path.join(workdir, "results.json")):
        return False
    return same_experiment(saved, json.loads(config.to_json()))


def point_dir(points_dir: str, config: ml_collections.ConfigDict, name: str) -> str:
    """Where a point's run lives under ``points_dir``: the directory of its own name if there is
    one; else a run of the same experiment under another name (another study's point: studies
    that share ``--points_dir`` run the paper's model once); else a new directory of its name."""
    own = os.path.join(points_dir, name)
    if os.path.isdir(own) or not os.path.isdir(points_dir):
        return own
    current = json.loads(config.to_json())
    for entry in sorted(os.listdir(points_dir)):
        saved = read_json(os.path.join(points_dir, entry, "config.json"))
        if saved is not None and same_experiment(saved, current):
            return os.path.join(points_dir, entry)
    return own


def point_dirs(config: ml_collections.ConfigDict, points: list[dict[str, Any]], points_dir: str) -> list[str]:
    return [point_dir(points_dir, apply_overrides(config, p), point_name(p)) for p in points]


VECTORIZE_CHOICES = ("auto", "true", "false")


def resolve_vectorize(vectorize: str, backend: str) -> bool:
    """``--vectorize``: true, false, or auto (vmapped groups off-CPU only: on the 2-core CPU
    they measured no faster than one point after another, experiments/vmap_sweep/vmap_speedup_cpu.json)."""
    if vectorize not in VECTORIZE_CHOICES:
        raise ValueError(f"--vectorize must be one of {VECTORIZE_CHOICES}, got {vectorize!r}")
    return vectorize == "true" or (vectorize == "auto" and backend != "cpu")


def run_sweep(
    config: ml_collections.ConfigDict,
    points: list[dict[str, Any]],
    workdir: str,
    sweep_index: int | Sequence[int] | None = None,
    vectorize: bool = True,
    points_dir: str | None = None,
) -> list[str]:
    """Runs every point (or only those of ``sweep_index``: one index, or several, as a launched
    task's vectorised group) into ``<points_dir or workdir>/<name>`` (see ``point_dir``); returns
    the run dirs."""
    from amobilenet_jax import train

    if isinstance(sweep_index, int):
        sweep_index = [sweep_index]
    chosen = range(len(points)) if sweep_index is None else list(dict.fromkeys(sweep_index))
    for i in chosen:
        if not 0 <= i < len(points):
            raise ConfigError(f"--sweep_index={i} is out of range: the sweep has {len(points)} points")
    configs = {i: apply_overrides(config, points[i]) for i in chosen}
    for i in chosen:
        validate(configs[i])
    dirs = {i: point_dir(points_dir or workdir, configs[i], point_name(points[i])) for i in chosen}
    todo = [i for i in chosen if not is_finished(dirs[i], configs[i])]
    for i in chosen:
        if i not in todo:
            print(f"[{i + 1}/{len(points)}] {point_name(points[i])}: finished, skipped", flush=True)
    groups = [[i] for i in todo]
    if vectorize and len(todo) > 1:
        from amobilenet_jax import vectorized

        groups = [[todo[j] for j in group] for group in vectorized.group_points([configs[i] for i in todo])]
    for group in groups:
        names = ", ".join(point_name(points[i]) for i in group)
        print(f"[{', '.join(str(i + 1) for i in group)}/{len(points)}] {names}", flush=True)
        if len(group) == 1:
            train.train_and_evaluate(configs[group[0]], dirs[group[0]])
        else:
            group_dir = os.path.join(workdir, "_vectorized", "+".join(str(i) for i in group))
            vectorized.train_and_evaluate_group([configs[i] for i in group], [dirs[i] for i in group], group_dir)
    return [dirs[i] for i in chosen]


# ---------------------------------------------------------------- tables


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


def run(
    config: ml_collections.ConfigDict,
    config_spec: str,
    points: list[dict[str, Any]],
    mode: str,
    workdir: str,
    sweep_index: int | Sequence[int] | None = None,
    vectorize: str = "auto",
    extra_args: Sequence[str] = (),
    points_dir: str | None = None,
) -> None:
    """A study from the command line: ``--mode train | eval | list | table`` over its points.

    ``train`` runs the points (skipping finished ones) and then, unless one array job ran
    (``sweep_index``), tabulates; ``table`` only tabulates. The table carries the paper's
    numbers when the config sets ``paper_table``. Point runs live under ``points_dir``
    (default ``workdir``); studies that share it share their common points.
    """
    import jax

    from amobilenet_jax import evaluate

    for point in points:  # every override names a field, before any point runs
        apply_overrides(config, point)
    if mode == "list":
        extra = [f"--points_dir={points_dir}"] if points_dir else []
        print("\n".join(list_commands(config_spec, workdir, points, extra + list(extra_args))))
        return
    dirs = point_dirs(config, points, points_dir or workdir)
    if mode == "eval":
        for overrides, run_dir in zip(points, dirs):
            result = evaluate.evaluate_checkpoint(apply_overrides(config, overrides), run_dir)
            print(json.dumps({"run": point_name(overrides), "split": result["split"], "accuracy": result["accuracy"]}))
        return
    if mode == "train":
        run_sweep(config, points, workdir, sweep_index, resolve_vectorize(vectorize, jax.default_backend()), points_dir)
    if sweep_index is None:  # one array job does not tabulate the others
        tabulate(config, config_spec, points, workdir, points_dir)


def tabulate(
    config: ml_collections.ConfigDict,
    config_spec: str,
    points: list[dict[str, Any]],
    workdir: str,
    points_dir: str | None = None,
) -> None:
    """Writes the study's tables and figures into ``workdir`` from its finished points, and prints
    the Markdown table."""
    title = os.path.basename(config_spec.partition(":")[0])[:-3]
    dirs = point_dirs(config, points, points_dir or workdir)
    write_tables(workdir, points, title, bool(config.paper_table), dirs, load_reference(config_spec))
    with open(os.path.join(workdir, "ablation.md")) as f:
        print(f.read())


def list_commands(config_spec: str, workdir: str, points: list[dict[str, Any]], extra: list[str]) -> list[str]:
    """One shell command per point (quoted for a POSIX shell), for array jobs on a cluster."""
    main = ["python", "-m", "amobilenet_jax.main", "--config", config_spec, "--workdir", workdir]
    return [f"{shlex.join([*main, f'--sweep_index={i}', *extra])}  # {point_name(p)}" for i, p in enumerate(points)]
