"""Vectorised training: sweep points that differ only in shape-free values, as one program.

Points that differ only in ``seed`` and the ``VECTORIZABLE_HPARAMS`` (learning rate, center-loss
lambda and alpha) run the same computation on different numbers. ``train_and_evaluate_group``
stacks their train states along a leading axis and trains them in a single run's loop
(``train.train_loop``: logging, checkpoints, results) with one ``jax.jit(jax.vmap(train_step))``:
one compile, and one launch of each op for all points. ``--vectorize=auto`` uses it off the CPU
only, where it pays.

Each point keeps its own data order (a ``[P, B]`` gather), randomness (``state.rng``), hparams
(``state.hparams``), workdir and results. Unlike a single run, a group evaluates each point once,
at the end; its stacked checkpoints live in ``group_dir`` (each point's workdir gets its final
state as a run's checkpoint, for ``--mode eval``); ``train/images_per_s`` and ``train_time_s``
are the group's; it needs the ``device`` data pipeline.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from amobilenet_jax import checkpoints, train
from amobilenet_jax.config import check_resumable
from amobilenet_jax.data.pipeline import TrainOrder
from amobilenet_jax.errors import CheckpointError
from amobilenet_jax.steps import (
    VECTORIZABLE_HPARAMS,
    TrainState,
    create_train_state,
    make_train_step,
)

# What the vmapped program may differ in: the seed and the array-valued hparams.
_VARYING_PATHS = ("seed", *VECTORIZABLE_HPARAMS.values())


def vectorizable_key(config: ml_collections.ConfigDict) -> str:
    """The config as JSON without ``seed`` and the ``VECTORIZABLE_HPARAMS`` paths.

    Points with equal keys compile to the same program and can train as one group.
    """
    tree = json.loads(config.to_json())
    for path in _VARYING_PATHS:
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return json.dumps(tree, sort_keys=True)


def group_points(configs: list[ml_collections.ConfigDict]) -> list[list[int]]:
    """Indices of ``configs`` grouped by ``vectorizable_key``, in first-seen order. A point that
    changes its program during training (``train.coarse_stem_epochs``) or distils from teachers
    (``loss.distill_weight``) is a group of its own: it trains on the sequential path."""
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        alone = config.train.coarse_stem_epochs > 0 or config.loss.distill_weight > 0
        key = f"alone {i}" if alone else vectorizable_key(config)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def stack_states(states: list[TrainState]) -> TrainState:
    """P states -> one state whose array leaves have a leading axis of size P.

    ``tx`` is rebuilt per config (fresh closures), so the static fields would not
    compare equal although they compute the same thing (the group key fixes every
    optimizer setting but the learning rate, which lives in ``hparams``): all points
    take the first state's ``apply_fn`` and ``tx``.
    """
    first = states[0]
    states = [s.replace(apply_fn=first.apply_fn, tx=first.tx) for s in states]
    return jax.tree.map(lambda *x: jnp.stack(x), *states)


def unstack_state(stacked: TrainState, i: int) -> TrainState:
    """Point ``i``'s state out of a stacked one."""
    return jax.tree.map(lambda x: x[i], stacked)


@jax.jit
def _gather_points(arrays: dict[str, jax.Array], idx: jax.Array) -> dict[str, jax.Array]:
    """``[P, B]`` indices -> batches of shape ``[P, B, ...]`` (take keeps the index shape)."""
    return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}


def _check_group(configs: list, workdirs: list[str]) -> None:
    if not configs:
        raise ValueError("an empty group")
    if len(configs) != len(workdirs):
        raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
    if len(set(map(os.path.abspath, workdirs))) != len(workdirs):
        raise ValueError("every point needs its own workdir")
    keys = {vectorizable_key(c) for c in configs}
    if len(keys) != 1:
        raise ValueError(
            "the group's configs differ in more than seed and "
            f"{', '.join(VECTORIZABLE_HPARAMS.values())}; split them with group_points"
        )
    if configs[0].data.pipeline != "device":
        raise ValueError("vectorised training needs data.pipeline='device'")
    if configs[0].train.coarse_stem_epochs > 0:
        raise ValueError("train.coarse_stem_epochs changes the program mid-run: such points train one by one")
    if configs[0].loss.distill_weight > 0:
        raise ValueError("loss.distill_weight runs teachers in the step: such points train one by one")


def _restore_group(mngr: ocp.CheckpointManager, stacked: TrainState, configs: list) -> tuple[TrainState, dict]:
    """The newest group checkpoint restored into ``stacked`` with its data position, or
    ``(stacked, {})`` when there is none.

    A checkpoint of another group (other points, or points in another order) is an
    error, never a silent fresh start over it.
    """

    def check(saved, where: str) -> None:
        if not isinstance(saved, list) or len(saved) != len(configs):
            raise CheckpointError(
                f"{where}: the checkpoint holds a group of {len(saved) if isinstance(saved, list) else '?'} points, "
                f"this group has {len(configs)}; use a new group_dir or restore the original configs"
            )
        for i, (old, new) in enumerate(zip(saved, configs, strict=True)):
            try:
                check_resumable(old, json.loads(new.to_json()), where)
            except CheckpointError as e:
                raise CheckpointError(f"point {i}: {e}") from None

    return checkpoints.restore(mngr, stacked, check, what="stacked train state")


def _group_batches(exp: train.Experiment, orders: list[TrainOrder], start_step: int):
    """``(step, batch)`` from ``start_step`` on, each point's batch drawn in its own order: ``[P, B, ...]``."""
    for step in range(start_step, exp.total_steps):
        idx = np.stack([order.indices(step) for order in orders])  # [P, B]
        yield step, _gather_points(exp.train_split.arrays, jnp.asarray(idx))


def train_and_evaluate_group(
    configs: list[ml_collections.ConfigDict], workdirs: list[str], group_dir: str
) -> list[dict]:
    """Trains the points of one vectorisable group together, then evaluates each.

    ``configs[i]`` trains into ``workdirs[i]`` (config.json, TensorBoard events,
    final checkpoint, results.json, confusion_matrix.png, as a single run writes);
    the stacked state's checkpoints, and resuming from them, live in ``group_dir``.
    Returns each point's results dict, in order.
    """
    _check_group(configs, workdirs)
    for workdir, config in zip(workdirs, configs, strict=True):
        train.prepare_workdir(workdir, config)
    os.makedirs(group_dir, exist_ok=True)

    # One dataset and one device copy of the train split serve every point: the
    # group key guarantees equal data, model and evaluation settings, so exp's
    # model, eval step and splits are valid for all points.
    exp = train.Experiment(configs[0])
    labels = exp.dataset.split("train").labels
    orders = [TrainOrder(c.seed, labels, c.train.batch_size, c.data.balance, c.data.balance_power) for c in configs]
    states = [create_point_state(c, exp) for c in configs]
    mngr = checkpoints.run_manager(group_dir, configs[0])
    try:  # closed on an error too: Orbax's writer threads must not outlive the interpreter
        if not mngr.all_steps():  # a fresh group: model.init_from as a single run applies it
            states = [
                train.apply_init_from(s, c, f"point {i}: ") if c.model.init_from else s
                for i, (s, c) in enumerate(zip(states, configs, strict=True))
            ]
        stacked = stack_states(states)
        del states
        stacked, position = _restore_group(mngr, stacked, configs)  # raises before anything is overwritten
        # Placed like Experiment.init_state's: left uncommitted, the state met the mesh-sharded
        # batches in every step and the vmapped step ran slower (experiments/vmap_sweep/).
        stacked = jax.device_put(stacked, exp.replicated)
        start_step = int(jax.device_get(stacked.step[0]))
        runs = [train.open_run(c, w, start_step, {}) for c, w in zip(configs, workdirs, strict=True)]
        if start_step:
            print(f"resuming group from checkpoint at step {start_step}", flush=True)
        step_fn = jax.jit(
            jax.vmap(make_train_step(configs[0], exp.total_steps)), donate_argnums=0, out_shardings=exp.replicated
        )
        batches = _group_batches(exp, orders, start_step)
        earlier = position.get("train_time_s")  # the group's attempts before this one; absent before it was carried
        stacked, trained = train.train_loop(exp, runs, stacked, step_fn, batches, mngr, start_step, earlier)
    finally:
        mngr.close()

    results = []
    for i, run in enumerate(runs):
        state = jax.device_put(unstack_state(stacked, i), exp.replicated)
        _save_point(exp, run, state)
        results.append(train.final_results(exp, state, run, trained, {"vectorized_group_size": len(runs)}))
    return results


def _save_point(exp: train.Experiment, run: train.Run, state: TrainState) -> None:
    """The point's final state as a single run's checkpoint in its workdir, so ``--mode eval`` works."""
    mngr = checkpoints.run_manager(run.workdir, run.config)
    step = int(jax.device_get(state.step))
    if mngr.latest_step() != step:  # a finished group rerun has saved it already
        checkpoints.save(mngr, state, json.loads(run.config.to_json()), exp.data_position(step))
    mngr.wait_until_finished()
    mngr.close()


def create_point_state(config: ml_collections.ConfigDict, exp: train.Experiment) -> TrainState:
    """One point's fresh state, from its own seed and hparams (``exp`` gives model and shapes)."""
    return create_train_state(config, exp.model, config.data.image_size, exp.num_classes, exp.total_steps)
