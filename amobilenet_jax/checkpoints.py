"""Checkpoints and run-directory files: the Orbax manager, save, restore, the resumability check,
and the one atomic writer every caller uses for JSON and figures.

A checkpoint holds the train state, the config and the data position together (three items of
one Orbax step directory). Orbax writes a step into a temporary directory and renames it when
complete, so a process killed mid-write leaves the previous step as the newest; the temporary
directory is swept up by the next manager (``cleanup_tmp_directories``).

Restoring never starts over a checkpoint it cannot use:

* a checkpoint of another experiment (``check_resumable``) is an error naming the fields;
* an unreadable one (a truncated or deleted file) is passed over for the next older one, and
  moved aside to ``checkpoints.corrupt/`` with a warning naming it; when none is readable,
  that is an error too, never a silent fresh start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from amobilenet_jax.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints.corrupt"

# Config fields that change no result, so a run may be resumed or evaluated with other values:
# where the data lives, how it is reported, how often things happen, how long to go on. Every
# other field (model, data set and its preparation, augmentation, loss, optimizer, batch size,
# seed, input size...) defines the experiment and must match the checkpoint's config.
FREE_FIELDS = (
    "eval_split",  # which split --mode eval and the per-epoch evaluation report
    "eval_flip",  # test-time flip: how a trained model is evaluated, not how it trains
    "paper_table",  # whether a study's table carries the paper's numbers
    "data.dir",  # the same data set moved to another disk
    "data.cache_dir",  # where its prepared copy is cached
    "data.grain_workers",  # host processes of the grain pipeline: same batches, other speed
    "data.on_error",  # how bad input is met: the skip count is recorded in results.json
    "model.depthwise_impl",  # the same convolution by another kernel (e.g. moved from CPU to GPU)
    "train.num_epochs",  # train on for longer: the Keras-decay rate is a function of the step alone
    "train.num_steps",  # (not under the cosine schedule, whose rate depends on the run's length)
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.max_checkpoints",
    "train.eval_every_epochs",
    "train.eval_batch_size",
)


# ---------------------------------------------------------------- files


def write_atomic(path: str, data: str | bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same directory and a rename:
    never half a file, and no temporary file left behind when writing or renaming fails."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any | None:
    """The JSON in ``path``, or None when there is no such file."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- the resumability check


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"width": 1.0}}`` -> ``{"model.width": 1.0}``."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _defaults() -> dict[str, Any]:
    from amobilenet_jax.config import base_config

    return flatten(json.loads(base_config().to_json()))


def _with_model_defaults(flat: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Model fields left as None read as the architecture's own default: ``model.cbam=None`` and
    ``model.cbam=True`` are the same A-MobileNet."""
    from amobilenet_jax.models import MODELS

    name = flat.get("model.name", defaults.get("model.name"))
    arch_defaults = MODELS[name][1] if name in MODELS else {}
    resolved = dict(flat)
    for field, value in arch_defaults.items():
        if resolved.get(f"model.{field}") is None:
            resolved[f"model.{field}"] = list(value) if isinstance(value, tuple) else value
    return resolved


def config_differences(saved: dict, current: dict) -> list[str]:
    """The experiment-defining fields in which ``current`` differs from ``saved``, as
    ``field (saved -> current)``. A field the saved config predates counts as its default."""
    defaults = _defaults()
    old, new = _with_model_defaults(flatten(saved), defaults), _with_model_defaults(flatten(current), defaults)
    free = set(FREE_FIELDS)
    if new.get("optimizer.schedule", "keras") != "keras":
        free -= {"train.num_epochs", "train.num_steps"}
    diffs = []
    for key in sorted(new):
        if key in free:
            continue
        before = old.get(key, defaults.get(key))
        if before != new[key]:
            diffs.append(f"{key} ({before!r} -> {new[key]!r})")
    return diffs


def check_resumable(saved: dict, current: dict, where: str) -> None:
    """Raises a one-line ``CheckpointError`` when ``current`` is another experiment than ``saved``."""
    diffs = config_differences(saved, current)
    if diffs:
        raise CheckpointError(
            f"{where}: written by another experiment: {', '.join(diffs)} differ; these fields define the "
            "experiment: use a new --workdir, or leave them as the run has them (without --config, "
            "the run's config.json is used)"
        )


# ---------------------------------------------------------------- the manager


def manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR), options=options)


def run_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    return manager(workdir, config.train.max_checkpoints)


def step_path(mngr: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(mngr.directory), str(step))


def save(mngr: ocp.CheckpointManager, state, config_json: Any, data_position: dict) -> None:
    """Saves ``state`` at its own step with the config and the data position (asynchronously)."""
    step = int(jax.device_get(state.step if state.step.ndim == 0 else state.step[0]))
    mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(config_json),
            data=ocp.args.JsonSave(data_position),
        ),
    )


def _move_aside(mngr: ocp.CheckpointManager, step: int) -> str:
    """Moves an unreadable step out of the manager's sight, keeping it for inspection."""
    source = step_path(mngr, step)
    target_dir = os.path.join(os.path.dirname(str(mngr.directory)), CORRUPT_DIR)
    target = os.path.join(target_dir, str(step))
    suffix = 1
    while os.path.exists(target):
        target, suffix = os.path.join(target_dir, f"{step}.{suffix}"), suffix + 1
    if jax.process_index() == 0:
        os.makedirs(target_dir, exist_ok=True)
        shutil.move(source, target)
    return target


def restore(
    mngr: ocp.CheckpointManager,
    state,
    check: Callable[[Any, str], None],
    what: str = "train state",
) -> tuple[Any, dict]:
    """The newest usable checkpoint restored into ``state``'s structure and shardings, with its
    data position; ``(state, {})`` unchanged when there is no checkpoint.

    ``check(saved_config, where)`` raises when the checkpoint belongs to another experiment:
    that stops the run. An unreadable step is skipped for the next older one; once one is
    restored, the unreadable newer ones are moved aside with a warning each (so that the run
    can write those steps again). When none is readable, ``CheckpointError``, and nothing moves.
    """
    steps = sorted(mngr.all_steps(), reverse=True)
    if not steps:
        return state, {}
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    failures: list[tuple[int, str]] = []
    for step in steps:
        where = step_path(mngr, step)
        try:
            meta = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - any failure to read is reported with the path
            failures.append((step, _describe("config", e)))
            continue
        check(meta.config, where)
        try:
            restored = mngr.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()),
            )
        except Exception as e:  # noqa: BLE001
            failures.append((step, _describe(what, e)))
            continue
        for bad_step, reason in failures:
            moved = _move_aside(mngr, bad_step)
            warnings.warn(
                f"{step_path(mngr, bad_step)}: unreadable checkpoint ({reason}); moved to {moved}; "
                f"resuming from step {step} instead",
                stacklevel=2,
            )
        if failures:
            mngr.reload()
        return restored.state, dict(restored.data or {})
    reasons = "; ".join(f"step {s}: {r}" for s, r in failures)
    raise CheckpointError(
        f"{mngr.directory}: no readable checkpoint ({reasons}); move or delete that directory to start this run over"
    )


def _describe(what: str, error: Exception) -> str:
    return f"cannot read its {what}: {type(error).__name__}: {' '.join(str(error).split())[:200]}"


def restore_run(mngr: ocp.CheckpointManager, state, config: ml_collections.ConfigDict) -> tuple[Any, dict]:
    """``restore`` for one run: the checkpoint's config must match ``config`` (``check_resumable``)."""
    current = json.loads(config.to_json())
    return restore(mngr, state, lambda saved, where: check_resumable(saved, current, where))


def check_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Refuses, before any work, a run directory whose newest checkpoint is another experiment's."""
    if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
        return
    mngr = run_manager(workdir, config)
    try:
        step = mngr.latest_step()
        if step is None:
            return
        try:
            meta = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception:  # noqa: BLE001 - unreadable: restore() deals with it when the run gets there
            return
        check_resumable(meta.config, json.loads(config.to_json()), step_path(mngr, step))
    finally:
        mngr.close()
