"""Vectorised training: sweep points that differ only in shape-free values, as one program.

Points of an ablation sweep that differ only in ``seed`` and the
``VECTORIZABLE_HPARAMS`` (learning rate, center-loss lambda and alpha) run the very
same computation on different numbers. ``train_and_evaluate_group`` stacks their
train states along a new leading axis and trains them with one
``jax.jit(jax.vmap(train_step))``: one compile, and one launch of each op for all
points. ``--vectorize=auto`` uses it off the CPU only, where it pays
(experiments/vmap_sweep/ has the CPU measurement).

Each point keeps everything that makes it its own run:

* its own data order (a ``TrainOrder`` from its seed) — the batch is a ``[P, B]`` gather;
* its own augmentation and dropout randomness (``state.rng`` comes from its seed);
* its own hparams (``state.hparams`` is part of the vmapped state).

Differences from ``train.train_and_evaluate``:

* per-epoch evaluation is skipped; each point is evaluated once, at the end (doing
  it mid-training would unstack and evaluate P states every epoch, which is what
  the sequential path is for);
* checkpoints of the *stacked* state live in ``group_dir/checkpoints``; each point's
  workdir gets its final state as a normal checkpoint, so ``--mode eval`` works;
* ``train/images_per_s`` is logged for the group (all points' images), and
  ``train_time_s`` in each point's results is the group's (shared) training time;
* only the ``device`` data pipeline is supported.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from amobilenet_jax import checkpoints, files, imagenet, train
from amobilenet_jax.config import check_resumable
from amobilenet_jax.data import load_dataset
from amobilenet_jax.data.augment import num_views
from amobilenet_jax.data.pipeline import TrainOrder
from amobilenet_jax.errors import CheckpointError
from amobilenet_jax.periodic import Periodic
from amobilenet_jax.steps import (
    VECTORIZABLE_HPARAMS,
    TrainState,
    create_train_state,
    make_train_step,
    with_evaluated_params,
)
from amobilenet_jax.summary_writer import TensorBoardWriter

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


def _restore_group(mngr: ocp.CheckpointManager, stacked: TrainState, configs: list) -> TrainState:
    """The newest group checkpoint restored into ``stacked``, or ``stacked`` when there is none.

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

    state, _ = checkpoints.restore(mngr, stacked, check, what="stacked train state")
    return state


def _group_progress_line(step: int, total: int, steps_per_epoch: int, images_per_s: float, losses) -> str:
    shown = " ".join(f"{float(v):.4f}" for v in losses)
    epoch = step / steps_per_epoch
    return f"[group of {len(losses)}] step {step}/{total} epoch {epoch:.2f} loss {shown} {images_per_s:.0f} img/s"


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
        os.makedirs(workdir, exist_ok=True)
        checkpoints.check_workdir(workdir, config)
    os.makedirs(group_dir, exist_ok=True)
    is_chief = jax.process_index() == 0
    num_points = len(configs)

    # One dataset and one device copy of the train split serve every point: the
    # group key guarantees equal data, model and evaluation settings, so exp's
    # model, eval step and splits are valid for all points.
    dataset = load_dataset(configs[0].data)
    exp = train.Experiment(configs[0], dataset)
    labels = dataset.split("train").labels
    bs = configs[0].train.batch_size
    orders = [TrainOrder(c.seed, labels, bs, c.data.balance, c.data.balance_power) for c in configs]
    per_epoch = exp.order.steps_per_epoch  # the epoch size does not depend on the seed
    total = exp.total_steps

    states = [create_point_state(c, exp) for c in configs]
    mngr = checkpoints.run_manager(group_dir, configs[0])
    try:  # closed on an error too: Orbax's writer threads must not outlive the interpreter
        if not mngr.all_steps():  # a fresh group: model.init_from as a single run applies it
            for i, c in enumerate(configs):
                if c.model.init_from:
                    states[i], line = imagenet.init_from_file(states[i], c.model.init_from)
                    states[i] = with_evaluated_params(states[i], states[i].params)
                    if jax.process_index() == 0:
                        print(f"point {i}: {line}", flush=True)
        stacked = stack_states(states)
        del states
        stacked = _restore_group(mngr, stacked, configs)  # raises before anything is overwritten
        # Placed like Experiment.init_state's: left uncommitted, the state met the mesh-sharded
        # batches in every step and the vmapped step ran 1.7-2.8x slower on CPU
        # (experiments/vmap_sweep/vmap_speedup.py).
        stacked = jax.device_put(stacked, exp.replicated)
        start_step = int(jax.device_get(stacked.step[0]))

        writers = [TensorBoardWriter(w, enabled=is_chief) for w in workdirs]
        if is_chief:
            for workdir, config in zip(workdirs, configs, strict=True):
                files.write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
        if start_step == 0:
            for writer, config in zip(writers, configs, strict=True):
                writer.write_hparams(train.flat_hparams(config))
        else:
            print(f"resuming group from checkpoint at step {start_step}", flush=True)

        step_fn = jax.jit(jax.vmap(make_train_step(configs[0], total)), donate_argnums=0, out_shardings=exp.replicated)
        configs_json = [json.loads(c.to_json()) for c in configs]
        names = [os.path.basename(os.path.abspath(w)) for w in workdirs]
        images_per_step = bs * num_points
        with Periodic(
            configs[0].train, total, per_epoch, start_step, mngr, images_per_step, evaluate=False, names=names
        ) as periodic:
            for step in range(start_step, total):
                idx = np.stack([order.indices(step) for order in orders])  # [P, B]
                batch = _gather_points(exp.train_split.arrays, jnp.asarray(idx))
                stacked, metrics = step_fn(stacked, batch)
                done = step + 1
                # clu's Average/LastValue merge elementwise, so [P]-shaped metrics accumulate as is.
                due = periodic.after_step(done, metrics)
                if due.log:
                    accumulated, images_per_s = periodic.take_metrics(done)
                    # clu refuses to compute a collection with a leading axis (it takes it for a
                    # replica axis), so each point's metrics are picked out and computed alone.
                    computed = [
                        jax.device_get(jax.tree.map(lambda x, i=i: x[i], accumulated).compute())
                        for i in range(num_points)
                    ]
                    for i, writer in enumerate(writers):
                        skipped = ("nonfinite_step", "distill_loss")  # a vectorised group never distils
                        scalars = {f"train/{k}": float(v) for k, v in computed[i].items() if k not in skipped}
                        scalars["train/images_per_s"] = images_per_s
                        writer.write_scalars(done, scalars)
                    if is_chief:
                        losses = [c["loss"] for c in computed]
                        print(_group_progress_line(done, total, per_epoch, images_per_s, losses), flush=True)
                if due.save:
                    periodic.save(done, stacked, configs_json, {"step": done})
        mngr.wait_until_finished()
    finally:
        mngr.close()

    results = []
    for i, (config, workdir, writer) in enumerate(zip(configs, workdirs, writers, strict=True)):
        state = jax.device_put(unstack_state(stacked, i), exp.replicated)
        point_mngr = checkpoints.run_manager(workdir, config)
        final_step = int(jax.device_get(state.step))
        if point_mngr.latest_step() != final_step:  # a finished group rerun has saved it already
            position = {"step": final_step, "epoch": final_step / per_epoch}
            checkpoints.save(point_mngr, state, configs_json[i], position)
        point_mngr.wait_until_finished()
        point_mngr.close()
        extra = {"vectorized_group_size": num_points}
        best = train.BestEval({}, num_views(config, crops=False))  # a group evaluates once, at the end
        trained = train.Trained(periodic.train_time, start_step, best)
        result = train.final_results(exp, state, config, workdir, writer, trained, extra)
        writer.close()
        results.append(result)
    return results


def create_point_state(config: ml_collections.ConfigDict, exp: train.Experiment) -> TrainState:
    """One point's fresh state, from its own seed and hparams (``exp`` gives model and shapes)."""
    return create_train_state(config, exp.model, config.data.image_size, exp.num_classes, exp.total_steps)
