"""Sweeps: a config file's ablation study expanded into points and run; ``report`` writes its tables.

A config file may define ``get_sweep(variant)`` returning a list of override dicts
(``{"model.cbam": False, "seed": 1}``, built with ``recipes.product`` and ``with_seeds``); each
point is the base config plus its overrides, run into ``<workdir>/<run name>/`` where the run name reads
``cbam=False,seed=1``. Finished points are skipped, interrupted ones resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections.abc import Sequence
from typing import Any

import ml_collections

from amobilenet_jax import report
from amobilenet_jax.config import VECTORIZE_CHOICES, config_differences, config_module, flatten, validate
from amobilenet_jax.errors import ConfigError
from amobilenet_jax.files import read_json
from amobilenet_jax.recipes import point_name


class SweepKeyError(ConfigError, KeyError):
    """A sweep point overrides a field the config does not have."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Study:
    """A study from the command line: the base config, its file's ``spec`` (``path[:variant]``), the
    points' overrides, the ``workdir`` its tables go to, where its points' runs live (``points_dir``,
    default ``workdir``) and the ``--config.*`` arguments each point's own command repeats."""

    config: ml_collections.ConfigDict
    spec: str
    points: list[dict[str, Any]]
    workdir: str
    points_dir: str | None = None
    extra_args: Sequence[str] = ()


def load_reference(config_spec: str) -> dict[str, Any] | None:
    """The overrides (without seed) of the study's row that is the paper's model: the config
    file's ``get_reference(variant)``, or None when it names none (no comparison column)."""
    module, variant = config_module(config_spec)
    return module.get_reference(variant) if hasattr(module, "get_reference") else None


def load_sweep(config_spec: str) -> list[dict[str, Any]] | None:
    """The sweep a config file defines (``get_sweep(variant)``), or None if it has none
    (no ``get_sweep``, or one that returns None for this variant: a single run)."""
    module, variant = config_module(config_spec)
    points = module.get_sweep(variant) if hasattr(module, "get_sweep") else None
    return None if points is None else [dict(point) for point in points]


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


def resolve_vectorize(vectorize: str, backend: str) -> bool:
    """``--vectorize``: true, false, or auto (vmapped groups off the CPU only; experiments/vmap_sweep/)."""
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


def run(study: Study, mode: str, sweep_index: int | Sequence[int] | None = None, vectorize: str = "auto") -> None:
    """A study from the command line: ``--mode train | eval | list | table`` over its points.

    ``train`` runs the points (skipping finished ones) and then, unless one array job ran
    (``sweep_index``), tabulates; ``table`` only tabulates. The table carries the paper's
    numbers when the config sets ``paper_table``. Point runs live under ``points_dir``
    (default ``workdir``); studies that share it share their common points.
    """
    import jax

    from amobilenet_jax import evaluate

    config, points, workdir, points_dir = study.config, study.points, study.workdir, study.points_dir
    for point in points:  # every override names a field, before any point runs
        apply_overrides(config, point)
    if mode == "list":
        extra = [f"--points_dir={points_dir}"] if points_dir else []
        print("\n".join(list_commands(study.spec, workdir, points, extra + list(study.extra_args))))
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
        tabulate(study)


def tabulate(study: Study) -> None:
    """Writes the study's tables and figures into ``workdir`` from its finished points, and prints
    the Markdown table."""
    config, points, workdir = study.config, study.points, study.workdir
    title = os.path.basename(study.spec.partition(":")[0])[:-3]
    dirs = point_dirs(config, points, study.points_dir or workdir)
    report.write_tables(workdir, points, title, bool(config.paper_table), dirs, load_reference(study.spec))
    with open(os.path.join(workdir, "ablation.md")) as f:
        print(f.read())


def list_commands(config_spec: str, workdir: str, points: list[dict[str, Any]], extra: list[str]) -> list[str]:
    """One shell command per point (quoted for a POSIX shell), for array jobs on a cluster."""
    main = ["python", "-m", "amobilenet_jax.main", "--config", config_spec, "--workdir", workdir]
    return [f"{shlex.join([*main, f'--sweep_index={i}', *extra])}  # {point_name(p)}" for i, p in enumerate(points)]
