"""One training run: the experiment built from a config, the loop, and its results.

``Experiment`` puts the data on the devices and jits the steps (``steps``) once. The batch
is sharded over the ``data`` axis of a 1-D mesh and the state is replicated, so the same
code runs on one device or many. ``train_loop`` (its log, evaluation, checkpoint, non-finite
guard and stop request are ``periodic.Periodic``'s) and the results are also a vectorised group's,
over a state stacked one member a run, so the two paths cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from amobilenet_jax import checkpoints, distill, evaluation, files, imagenet, weights
from amobilenet_jax.config import flatten, num_train_steps
from amobilenet_jax.data import Dataset, load_dataset, split_names
from amobilenet_jax.data.augment import num_views
from amobilenet_jax.data.pipeline import PIPELINES, DeviceSplit, TrainOrder, make_mesh
from amobilenet_jax.errors import ConfigError
from amobilenet_jax.models import build_model, count_params, forward_flops, model_kwargs
from amobilenet_jax.periodic import Periodic
from amobilenet_jax.steps import (
    TrainState,
    abstract_train_state,
    create_train_state,
    evaluated_variables,
    make_eval_step,
    make_train_step,
    params_fingerprint,
    with_evaluated_params,
)
from amobilenet_jax.summary_writer import TensorBoardWriter, read_scalars


def process_rows(sharding: NamedSharding, batch_size: int) -> slice:
    """The rows of a ``batch_size`` batch that live on this process's devices under ``sharding``.

    One contiguous block per process (the mesh lists each process's devices together);
    all rows on a single host.
    """
    index_map = sharding.addressable_devices_indices_map((batch_size,))
    starts = [idx[0].start or 0 for idx in index_map.values()]
    stops = [batch_size if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
    start, stop = min(starts), max(stops)
    if stop - start != sum(b - a for a, b in set(zip(starts, stops))):
        raise ValueError(f"this process's devices hold rows that are not one block: {sorted(zip(starts, stops))}")
    return slice(start, stop)


class Experiment:
    """What a run needs, built once from a config: data on device, model, jitted steps."""

    def __init__(
        self, config: ml_collections.ConfigDict, dataset: Dataset | None = None, devices=None, training: bool = True
    ):
        self.config = config
        # The distillation teachers first: a misnamed one fails before the data is read.
        self.teachers = distill.load_teachers(config) if training else []
        self.dataset = dataset if dataset is not None else load_dataset(config.data)
        self.num_classes = self.dataset.num_classes
        self.mesh = make_mesh(devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.model = build_model(config.model, self.num_classes)
        if config.train.batch_size % self.mesh.devices.size:
            raise ValueError(
                f"train.batch_size={config.train.batch_size} is not divisible by the {self.mesh.devices.size} devices"
            )
        if config.data.pipeline not in PIPELINES:
            raise ValueError(f"data.pipeline must be one of {PIPELINES}, got {config.data.pipeline!r}")
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        if training:
            train = self.dataset.split("train")
            extra = {}
            if self.teachers and config.loss.distill_views == "stored":
                extra["teacher"] = distill.stored_probabilities(self.teachers, train.images, config)
            self.train_split = DeviceSplit(train, self.mesh, extra) if config.data.pipeline == "device" else None
            self.order = TrainOrder(
                config.seed, train.labels, config.train.batch_size, config.data.balance, config.data.balance_power
            )
            self.total_steps = num_train_steps(config, self.order.steps_per_epoch)
            self.coarse_steps = round(float(config.train.coarse_stem_epochs) * self.order.steps_per_epoch)
            if self.coarse_steps >= self.total_steps:
                raise ConfigError(
                    f"config: train.coarse_stem_epochs={config.train.coarse_stem_epochs!r} is {self.coarse_steps} "
                    f"steps, not fewer than the run's {self.total_steps}: it would end with the stem at stride 2"
                )
            coarse = config.model.copy_and_resolve_references()
            coarse.stem_stride = 2
            self.coarse_model = build_model(coarse, self.num_classes) if self.coarse_steps else None
            on_batch = self.teachers if config.loss.distill_views == "batch" else []
            step = jax.jit(
                make_train_step(config, self.total_steps, [t.model for t in on_batch]),
                donate_argnums=0,
                out_shardings=self.replicated,
            )
            teacher_variables = jax.device_put(tuple(t.variables for t in on_batch), self.replicated)
            self.train_step = functools.partial(step, teacher_variables=teacher_variables) if on_batch else step
        else:  # evaluation only: the state's structure does not depend on the run's length
            self.train_split, self.order, self.total_steps = None, None, 1
            self.coarse_steps, self.coarse_model = 0, None
        self.eval_step = jax.jit(make_eval_step(config, self.num_classes), out_shardings=self.replicated)
        # Per-epoch evaluations during training vote over the whole image (and its mirror) only,
        # so eval_crops costs one evaluation a run, not one an epoch.
        self.epoch_eval_step = (
            jax.jit(make_eval_step(config, self.num_classes, crops=False), out_shardings=self.replicated)
            if config.eval_crops
            else self.eval_step
        )
        self._eval_splits: dict[str, DeviceSplit] = {}
        self.default_eval_split = resolve_eval_split(config.eval_split, list(self.dataset.splits))

    @classmethod
    def for_evaluation(cls, config: ml_collections.ConfigDict, split: str | None = None) -> Experiment:
        """An experiment that evaluates ``split`` (default ``eval_split``) and reads no other split."""
        split = split or config.eval_split
        if split == "auto":
            split = resolve_eval_split(split, split_names(config.data))
        exp = cls(config, load_dataset(config.data, [split]), training=False)
        exp.default_eval_split = split
        return exp

    def train_batches(self, start_step: int, grain_state: dict | None = None):
        """Yields ``(step, batch)`` from ``start_step`` on, the batch sharded over the mesh."""
        if self.train_split is not None:
            for step in range(start_step, self.total_steps):
                yield step, self.train_split.batch(self.order.indices(step))
            return
        from amobilenet_jax.data.grain_pipeline import train_iterator

        iterator = train_iterator(
            self.dataset.split("train"),
            self.order,
            self.config.data,
            self.config.seed,
            self.total_steps,
            self.config.data.grain_workers,
            rows=process_rows(self.batch_sharding, self.config.train.batch_size),
        )
        if grain_state is not None:
            iterator.set_state(grain_state)
        elif start_step:
            raise ValueError("resuming a grain pipeline needs its iterator state from the checkpoint")
        self.grain_iterator = iterator
        batch_size = self.config.train.batch_size
        for step in range(start_step, self.total_steps):
            local = next(iterator)  # this process's rows of the global batch
            make = jax.make_array_from_process_local_data
            yield step, {k: make(self.batch_sharding, v, (batch_size, *v.shape[1:])) for k, v in local.items()}

    def apply_fn(self, step: int):
        """The model that trains step ``step``: with ``train.coarse_stem_epochs``, the same parameters
        with the stem at stride 2 (a quarter of the pixels in every layer) before ``coarse_steps``."""
        return self.coarse_model.apply if step < self.coarse_steps else self.model.apply

    def data_position(self, step: int) -> dict:
        position = {"step": step, "epoch": step / self.order.steps_per_epoch}
        if self.train_split is None and getattr(self, "grain_iterator", None) is not None:
            position["grain_iterator"] = self.grain_iterator.get_state()
        return position

    def init_state(self) -> TrainState:
        state = create_train_state(
            self.config, self.model, self.config.data.image_size, self.num_classes, self.total_steps
        )
        return jax.device_put(state, self.replicated)

    def abstract_state(self) -> TrainState:
        """``init_state``'s shapes, dtypes and shardings, without running an init: the target a
        checkpoint is restored into."""
        shapes = abstract_train_state(
            self.config, self.model, self.config.data.image_size, self.num_classes, self.total_steps
        )
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated), shapes)

    def restored_or_fresh_state(self, mngr) -> tuple[TrainState, dict]:
        """The newest usable checkpoint of ``mngr`` (``checkpoints.restore_run``) with its data
        position, else a fresh state and ``{}``: the model's init runs only for a fresh run."""
        if mngr.all_steps():
            return checkpoints.restore_run(mngr, self.abstract_state(), self.config)
        return self.init_state(), {}

    def eval_split(self, name: str) -> DeviceSplit:
        if name not in self._eval_splits:
            self._eval_splits[name] = DeviceSplit(self.dataset.split(name), self.mesh)
        return self._eval_splits[name]

    def evaluate(self, state: TrainState, split: str, progress: bool = False, crops: bool = True) -> dict:
        """Metrics over the whole split; ``result["attention"]`` holds the first images' CBAM maps.

        ``progress``: print how far it got every few seconds (long splits, slow machines).
        ``crops``: vote over the ``eval_crops`` views too (the per-epoch evaluations do not).
        """
        eval_step = self.eval_step if crops else self.epoch_eval_step
        confusion, attention = None, None
        device_split = self.eval_split(split)
        batch_size = self.config.train.eval_batch_size
        started = last_print = time.perf_counter()
        for i, batch in enumerate(device_split.eval_batches(batch_size)):
            counts, maps = eval_step(state, batch)
            confusion = counts if confusion is None else confusion + counts
            attention = maps if attention is None else attention
            now = time.perf_counter()
            if progress and now - last_print >= PROGRESS_EVERY_S:
                done = min((i + 1) * batch_size, device_split.size)
                print(f"evaluating {split}: {done}/{device_split.size} images, {now - started:.0f} s", flush=True)
                last_print = now
        result = evaluation.confusion_metrics(np.asarray(jax.device_get(confusion)), self.dataset.class_names)
        result["attention"] = jax.device_get(attention)
        return result

    def attention_images(self, split: str, attention: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Input images next to each CBAM block's spatial attention, as [N, H, W, 3] in [0, 1]."""
        if not attention:
            return {}
        num = len(next(iter(attention.values())))
        images = self.dataset.split(split).images[:num]
        size = self.config.data.image_size
        shown = {"attention/input": evaluation.upsample(images.astype(np.float32) / 255.0, size)}
        for name, amap in attention.items():
            amap = np.asarray(amap, np.float32)[..., None]
            lo = amap.min(axis=(1, 2, 3), keepdims=True)
            hi = amap.max(axis=(1, 2, 3), keepdims=True)
            shown[f"attention/{name}"] = evaluation.upsample((amap - lo) / np.maximum(hi - lo, 1e-6), size)
        return {k: np.repeat(v, 3, axis=-1) if v.shape[-1] == 1 else v for k, v in shown.items()}


def resolve_eval_split(eval_split: str, split_names: list[str]) -> str:
    """``auto``: Valid where the data set has one (select on it), else Test (RAF-DB, synthetic)."""
    if eval_split != "auto":
        return eval_split
    return "valid" if "valid" in split_names else "test"


PROGRESS_EVERY_S = 5.0  # a long evaluation prints how far it got this often


class BestEval:
    """The best of the per-epoch evaluations, all over the same ``views`` (the whole image, with its
    mirror under ``eval_flip``), carried in the checkpoint's data position across resumes. A final
    evaluation over other views (``eval_crops``) is reported, not compared with them."""

    def __init__(self, position: dict, views: int):
        saved = position.get("best_eval") or {}
        if saved.get("views", views) != views:  # evaluated over other views before a resume: not comparable
            saved = {}
        self.accuracy = saved.get("accuracy")
        self.epoch = saved.get("epoch")
        self.views = views

    def update(self, epoch: float, split: str, result: dict) -> str:
        """Records ``result`` and returns the console line for it."""
        if self.accuracy is None or result["accuracy"] > self.accuracy:
            self.accuracy, self.epoch = result["accuracy"], epoch
        return f"{_eval_line(epoch, split, result)} best {self.accuracy:.4f} (epoch {self.epoch:g})"

    def final(self, epoch: float, split: str, result: dict, views: int) -> str:
        """The final evaluation, over ``views`` views: recorded where they are the per-epoch ones."""
        if views == self.views:
            return self.update(epoch, split, result)
        best = "none" if self.accuracy is None else f"{self.accuracy:.4f} (epoch {self.epoch:g})"
        return f"{_eval_line(epoch, split, result)} over {views} views; per-epoch best over {self.views} views: {best}"

    def position(self) -> dict:
        if self.accuracy is None:
            return {}
        return {"best_eval": {"accuracy": self.accuracy, "epoch": self.epoch, "views": self.views}}

    def results(self) -> dict:
        """``results.json``'s fields: the best per-epoch evaluation and the views it voted over."""
        return {"best_accuracy": self.accuracy, "best_epoch": self.epoch, "best_views": self.views}


def _eval_line(epoch: float, split: str, result: dict) -> str:
    return (
        f"epoch {epoch:g} {split} accuracy {result['accuracy']:.4f} mean per class {result['mean_class_accuracy']:.4f}"
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, dataset: Dataset | None = None) -> dict:
    """Trains (resuming from ``workdir``'s newest checkpoint), evaluates, writes results.

    Returns the dict written to ``workdir/results.json``. SIGTERM/SIGINT save a checkpoint at
    the current step and raise ``Interrupted``; a NaN or Inf raises ``NonFiniteError``.
    """
    prepare_workdir(workdir, config)  # before the data is loaded: a wrong run fails fast
    exp = Experiment(config, dataset)
    mngr = checkpoints.run_manager(workdir, config)
    try:
        return _train(exp, mngr, config, workdir)
    finally:
        mngr.close()  # also on an error: Orbax's writer threads must not outlive the interpreter


def _train(exp: Experiment, mngr, config: ml_collections.ConfigDict, workdir: str) -> dict:
    is_chief = jax.process_index() == 0
    resuming = bool(mngr.all_steps())
    state, position = exp.restored_or_fresh_state(mngr)  # raises before anything is written
    if config.model.init_from and not resuming:  # a checkpoint always wins over model.init_from
        state = apply_init_from(state, config)
    start_step = int(jax.device_get(state.step))
    run = open_run(config, workdir, start_step, position)
    if is_chief and exp.teachers:
        print(f"distilling from {len(exp.teachers)} teacher(s) (loss.distill_weight {config.loss.distill_weight:g}, "
              f"temperature {config.loss.distill_temperature:g}, views: {config.loss.distill_views}): "
              f"{', '.join(t.path for t in exp.teachers)}", flush=True)  # fmt: skip
    if is_chief and config.optimizer.ema_decay > 0:
        print(f"evaluating and saving the weights' moving average (optimizer.ema_decay {config.optimizer.ema_decay:g})",
              flush=True)  # fmt: skip
    if start_step:
        print(f"resuming from checkpoint at step {start_step}", flush=True)
    batches = exp.train_batches(start_step, position.get("grain_iterator"))
    earlier = position.get("train_time_s")  # absent from checkpoints written before it was carried
    state, trained = train_loop(exp, [run], state, exp.train_step, batches, mngr, start_step, earlier)
    return final_results(exp, state, run, trained)


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Creates ``workdir``; raises if it holds a run of another experiment."""
    os.makedirs(workdir, exist_ok=True)
    checkpoints.check_workdir(workdir, config)


def apply_init_from(state: TrainState, config: ml_collections.ConfigDict, label: str = "") -> TrainState:
    """A fresh state with ``model.init_from``'s weights (the weight average starts from them too)."""
    state, line = imagenet.init_from_file(state, config.model.init_from)
    if jax.process_index() == 0:
        print(label + line, flush=True)
    return with_evaluated_params(state, state.params)


@dataclasses.dataclass(frozen=True)
class Run:
    """What is a run's own in a loop that may train several (a vectorised group): its config,
    workdir, TensorBoard writer and best per-epoch evaluation."""

    config: ml_collections.ConfigDict
    workdir: str
    writer: TensorBoardWriter
    best: BestEval


def open_run(config: ml_collections.ConfigDict, workdir: str, start_step: int, position: dict) -> Run:
    """A run's outputs from ``start_step`` on: ``config.json``, its TensorBoard writer (which drops
    what a killed attempt logged after ``start_step``: what it logged at that step, the
    checkpoint's, was trained and stays) with the hparams of a fresh run, and the best evaluation
    carried in the checkpoint's data ``position``."""
    is_chief = jax.process_index() == 0
    if is_chief:
        files.write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    writer = TensorBoardWriter(workdir, enabled=is_chief, purge_step=start_step + 1 if start_step else None)
    if start_step == 0:
        writer.write_hparams(flat_hparams(config))
    return Run(config, workdir, writer, BestEval(position, num_views(config, crops=False)))


@dataclasses.dataclass(frozen=True)
class Trained:
    """How a loop's training went, for its runs' results: seconds spent training (this process's,
    plus its checkpoint's count of the attempts before it where ``earlier_counted``) and the step
    it resumed from (0: a fresh run)."""

    train_time: float
    start_step: int
    earlier_counted: bool = False


def train_loop(
    exp: Experiment,
    runs: list[Run],
    state: TrainState,
    train_step,
    batches,
    mngr,
    start_step: int,
    earlier_train_time: float | None = None,
):
    """Trains ``state`` on ``batches`` (``(step, batch)`` from ``start_step`` on) with the periodic
    actions: each run's metrics logged, evaluated, and the state checkpointed through ``mngr``.
    Returns the trained state and a ``Trained``. ``earlier_train_time``: the seconds the resumed
    checkpoint says the attempts before this one trained (each checkpoint carries the count).

    One run, or a vectorised group's: a state whose ``step`` has a leading axis holds one member
    a run (and so do the step's metrics); a group is evaluated at the end only.
    """
    stacked = np.ndim(state.step) == 1
    is_chief = jax.process_index() == 0
    total, per_epoch = exp.total_steps, exp.order.steps_per_epoch
    images_per_step = exp.config.train.batch_size * len(runs)
    names = [os.path.basename(os.path.abspath(r.workdir)) for r in runs] if stacked else None
    saved_configs = [json.loads(r.config.to_json()) for r in runs]
    config_json = saved_configs if stacked else saved_configs[0]

    def member(tree, i: int):
        return jax.tree.map(lambda x: x[i], tree) if stacked else tree

    periodic = Periodic(
        exp.config.train, total, per_epoch, start_step, mngr, images_per_step, evaluate=not stacked, names=names,
        earlier_train_time=earlier_train_time or 0.0,
    )  # fmt: skip
    with periodic:
        for step, batch in batches:
            if state.apply_fn != exp.apply_fn(step):  # the coarse stem's first step, or its end
                state = state.replace(apply_fn=exp.apply_fn(step))  # another program: jit compiles it once
                if is_chief:
                    print(_stem_line(step, exp), flush=True)
            state, metrics = train_step(state, batch)
            done = step + 1
            # clu's Average/LastValue merge elementwise, so a group's [P]-shaped metrics accumulate as is.
            due = periodic.after_step(done, metrics)
            if due.log:
                accumulated, images_per_s = periodic.take_metrics(done)
                # clu refuses to compute a collection with a leading axis (it takes it for a
                # replica axis), so each member's metrics are picked out and computed alone.
                computed = [jax.device_get(member(accumulated, i).compute()) for i in range(len(runs))]
                scalars = [_train_scalars(exp, c, step, images_per_s) for c in computed]
                for run, run_scalars in zip(runs, scalars, strict=True):
                    run.writer.write_scalars(done, run_scalars)
                if is_chief:
                    print(_progress_line(exp, done, images_per_s, scalars, stacked), flush=True)
            if due.evaluate:
                with periodic.paused():
                    for i, run in enumerate(runs):
                        result = _write_eval(run.writer, exp, member(state, i), done)
                        if is_chief:
                            print(run.best.update(done / per_epoch, exp.default_eval_split, result), flush=True)
            if due.save:
                position = exp.data_position(done)
                if not stacked:  # a group evaluates at the end only: no best to carry
                    position.update(runs[0].best.position())
                periodic.save(done, state, config_json, position)
    mngr.wait_until_finished()
    return state, Trained(periodic.train_time, start_step, earlier_train_time is not None)


def _train_scalars(exp: Experiment, computed: dict, step: int, images_per_s: float) -> dict[str, float]:
    scalars = {f"train/{k}": float(v) for k, v in computed.items() if k != "nonfinite_step"}
    if not exp.teachers:
        scalars.pop("train/distill_loss")
    scalars["train/images_per_s"] = images_per_s
    if exp.coarse_steps:
        scalars["train/stem_stride"] = 2.0 if step < exp.coarse_steps else 1.0
    return scalars


def _progress_line(exp: Experiment, step: int, images_per_s: float, scalars: list[dict], group: bool) -> str:
    total, per_epoch = exp.total_steps, exp.order.steps_per_epoch
    if group:  # every member's loss; images_per_s counts all members' images
        losses = " ".join(f"{s['train/loss']:.4f}" for s in scalars)
        return (
            f"[group of {len(scalars)}] step {step}/{total} epoch {step / per_epoch:.2f} loss {losses} "
            f"{images_per_s:.0f} img/s"
        )
    (run,) = scalars
    eta_s = (total - step) * exp.config.train.batch_size / images_per_s
    eta = time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0)))
    return (
        f"step {step}/{total} epoch {step / per_epoch:.2f} loss {run['train/loss']:.4f} "
        f"acc {run['train/accuracy']:.3f} {images_per_s:.0f} img/s ETA {eta}"
    )


def _stem_line(step: int, exp: Experiment) -> str:
    if step < exp.coarse_steps:
        return (
            f"steps {step}-{exp.coarse_steps - 1}: the stem at stride 2 (train.coarse_stem_epochs "
            f"{exp.config.train.coarse_stem_epochs:g}); evaluations meanwhile run the same stem"
        )
    return f"step {step} on: the stem at stride 1 (model.stem_stride)"


def _write_eval(writer: TensorBoardWriter, exp: Experiment, state: TrainState, step: int, final: bool = False) -> dict:
    split = exp.default_eval_split
    if final and exp.config.eval_crops:
        print(f"final evaluation: {views_line(exp.config)}", flush=True)
    result = exp.evaluate(state, split, progress=True, crops=final)
    attention = result.pop("attention")
    writer.write_scalars(
        step,
        {
            f"eval/{split}_accuracy": result["accuracy"],
            f"eval/{split}_mean_class_accuracy": result["mean_class_accuracy"],
        },
    )
    png = evaluation.confusion_figure_png(np.asarray(result["confusion_matrix"]), exp.dataset.class_names)
    images = {f"eval/{split}_confusion_matrix": evaluation.png_to_array(png)}
    images.update(exp.attention_images(split, attention))
    writer.write_images(step, images)
    writer.flush()
    result["confusion_png"] = png
    return result


def final_results(exp: Experiment, state: TrainState, run: Run, trained: Trained, extra: dict | None = None) -> dict:
    """The last evaluation; writes ``results.json``, the weights, the confusion matrix and the
    curves into the run's workdir, and closes its writer. ``extra``: more fields for the results."""
    config, workdir, writer, best = run.config, run.workdir, run.writer, run.best
    train_time, start_step = trained.train_time, trained.start_step
    step = int(jax.device_get(state.step))
    split = exp.default_eval_split
    result = _write_eval(writer, exp, state, step, final=True)
    png = result.pop("confusion_png")
    variables = evaluated_variables(state)  # the moving average where the run keeps one
    params = jax.device_get(variables["params"])
    result.update(
        {
            "split": split,
            "model": config.model.name,
            "model_kwargs": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in model_kwargs(config.model, exp.num_classes).items()
            },
            "dataset": exp.dataset.name,
            "class_names": list(exp.dataset.class_names),
            "image_size": config.data.image_size,
            "params": count_params(params),
            "flops": forward_flops(exp.model, variables, config.data.image_size),
            "final_step": step,
            "params_fingerprint": params_fingerprint(params),
            "train_time_s": train_time,
            "resumed_from_step": start_step,
            "devices": [str(d) for d in jax.devices()],
            "skipped_items": len(getattr(exp.dataset, "skipped", ())),
            **(extra or {}),
        }
    )
    line = best.final(step / exp.order.steps_per_epoch, split, result, num_views(config))
    result.update(best.results())
    if jax.process_index() == 0:
        files.write_atomic(os.path.join(workdir, "confusion_matrix.png"), png)
        # The trained model in one file: what predict, export and visualize load (no Orbax there).
        weights.save(os.path.join(workdir, weights.WEIGHTS_FILE), params, state.batch_stats)
        # A run resumed from a checkpoint that did not carry the training time (written before it
        # was carried) adds its own to what earlier results recorded, where there are any.
        previous = files.read_json(os.path.join(workdir, "results.json"))
        if start_step > 0 and not trained.earlier_counted and previous and previous.get("final_step", 0) <= start_step:
            result["train_time_s"] += previous.get("train_time_s", 0.0)
        files.write_json_atomic(os.path.join(workdir, "results.json"), result)
        writer.flush()
        curves = evaluation.training_curves_png(read_scalars(workdir), os.path.basename(os.path.abspath(workdir)))
        files.write_atomic(os.path.join(workdir, "training_curves.png"), curves)
        print(line, flush=True)
        print(f"final {split} accuracy {result['accuracy']:.4f} at step {step}; results in "
              f"{os.path.join(workdir, 'results.json')}", flush=True)  # fmt: skip
    writer.close()
    return result


def views_line(config: ml_collections.ConfigDict) -> str:
    """What an evaluation votes over, for the console."""
    mirrors = ", each with its mirror image" if config.eval_flip else ""
    return (
        f"{num_views(config)} test-time views (the whole image and {config.eval_crops} crops at zoom "
        f"{config.eval_crop_zoom:g}{mirrors}; eval_crops)"
    )


def flat_hparams(config: ml_collections.ConfigDict) -> dict:
    return flatten(json.loads(config.to_json()))
