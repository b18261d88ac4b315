"""Checkpoints and run-directory files: the Orbax manager, save, restore, the resumability check,
and the one atomic writer every caller uses for JSON and figures.

A checkpoint holds the train state, the config and the data position together (three items of
one Orbax step directory). Orbax writes a step into a temporary directory and renames it when
complete, so a process killed mid-write leaves the previous step as the newest; the temporary
directory is swept up by the next run that writes there (``cleanup_tmp_directories``). Only a
writer sweeps: a reader (the resumability check, ``evaluate``, ``ship``) may look at a run
that is still training, whose temporary directory is a save in progress, and two managers
sweeping the same directory at once race each other to delete it (the second one fails).

Restoring never starts over a checkpoint it cannot use:

* a checkpoint of another experiment (``check_resumable``) is an error naming the fields;
* an unreadable one (a truncated or deleted file) is passed over for the next older one, and
  moved aside to ``checkpoints.corrupt/`` with a warning naming it; when none is readable,
  that is an error too, never a silent fresh start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from amobilenet_jax.config import check_resumable
from amobilenet_jax.errors import CheckpointError


def _quiet_save_timing(record: logging.LogRecord) -> bool:
    """Orbax warns when a save waited for the previous one ("Waiting for previous save to
    complete took 1.1 seconds"): a timing note on a loaded machine, not a fault. On stderr it
    broke the rule that a stopped run ends in one line, so it is dropped."""
    return "Waiting for previous save to complete" not in record.getMessage()


logging.getLogger("absl").addFilter(_quiet_save_timing)

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints.corrupt"

# ---------------------------------------------------------------- the manager


def manager(workdir: str, max_to_keep: int, writer: bool = True) -> ocp.CheckpointManager:
    """The Orbax manager of ``workdir/checkpoints``; ``writer=False`` for one that only reads,
    which leaves unfinished (temporary) step directories to the run that writes there."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=writer)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR), options=options)


def run_manager(workdir: str, config: ml_collections.ConfigDict, writer: bool = True) -> ocp.CheckpointManager:
    return manager(workdir, config.train.max_checkpoints, writer)


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
    """The newest usable checkpoint restored into ``state``'s structure and shardings (a state,
    or its ``jax.ShapeDtypeStruct`` leaves with shardings), with its data position; ``(state, {})``
    unchanged when there is no checkpoint.

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
    mngr = run_manager(workdir, config, writer=False)
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
