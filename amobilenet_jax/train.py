"""Training and evaluation: TrainState, the jitted steps, and the run loop.

``train_step(state, batch) -> (state, metrics)`` is one pure function, jitted
once. The batch is sharded over the ``data`` axis of a 1-D mesh and the state is
replicated, so the same code runs on one device or many.
"""

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import metrics as clu_metrics
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from amobilenet_jax import checkpoints, evaluation, losses
from amobilenet_jax.config import num_train_steps
from amobilenet_jax.data import Dataset, load_dataset
from amobilenet_jax.data.augment import augment, normalize, resize
from amobilenet_jax.data.pipeline import DeviceSplit, TrainOrder, make_mesh
from amobilenet_jax.errors import ConfigError, Interrupted, NonFiniteError, RunNotFoundError
from amobilenet_jax.models import build_model, cpu_kernels, model_kwargs
from amobilenet_jax.preemption import StopRequest
from amobilenet_jax.summary_writer import TensorBoardWriter, read_scalars


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training, and nothing else.

    ``centers`` are the center-loss class centers: moved by Eq. 9, never by the optimizer.
    ``hparams`` holds the scalars that change no shape (learning rate, lambda, alpha) as
    arrays, so that runs differing only in them can train as one vmapped program.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    centers: jax.Array
    rng: jax.Array
    hparams: dict[str, jax.Array]
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class FirstNonFinite(clu_metrics.Metric):
    """The first step (1-based) whose loss or gradients held a NaN or Inf; 0 when none did.

    Accumulated on the device with the other metrics and read at the loop's existing
    sync points (log, evaluation, checkpoint): the guard costs no host sync of its own.
    """

    step: jax.Array

    @classmethod
    def from_model_output(cls, nonfinite_step: jax.Array, **_) -> "FirstNonFinite":
        return cls(step=nonfinite_step)

    def merge(self, other: "FirstNonFinite") -> "FirstNonFinite":
        a, b = self.step, other.step
        return type(self)(step=jnp.where((a > 0) & ((b == 0) | (a < b)), a, b))

    def compute(self) -> jax.Array:
        return self.step


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
    loss: clu_metrics.Average.from_output("loss")
    softmax_loss: clu_metrics.Average.from_output("softmax_loss")
    center_loss: clu_metrics.Average.from_output("center_loss")
    accuracy: clu_metrics.Average.from_output("accuracy")
    learning_rate: clu_metrics.LastValue.from_output("learning_rate")
    nonfinite_step: FirstNonFinite


VECTORIZABLE_HPARAMS = {
    "learning_rate": "optimizer.learning_rate",
    "center_weight": "loss.center_weight",
    "center_update_rate": "loss.center_update_rate",
}


def hparams_from_config(config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    values = {name: config[path.split(".")[0]][path.split(".")[1]] for name, path in VECTORIZABLE_HPARAMS.items()}
    return {name: jnp.asarray(value, jnp.float32) for name, value in values.items()}


SCHEDULES = ("keras", "cosine")


def learning_rate_factor(config: ml_collections.ConfigDict, total_steps: int | None = None) -> Callable:
    """``lr_t / lr`` as a function of the step.

    ``keras`` (the paper's recipe): ``1 / (1 + decay * t)``. ``cosine``: a linear warmup over
    ``optimizer.warmup_steps``, then half a cosine from 1 down to 0 at ``total_steps``.
    """
    o = config.optimizer
    if o.schedule == "keras":
        decay = float(o.decay)
        return lambda step: 1.0 / (1.0 + decay * step)
    if o.schedule != "cosine":
        raise ConfigError(f"config: optimizer.schedule={o.schedule!r} is not one of {SCHEDULES}")
    if not total_steps:
        raise ValueError("the cosine schedule needs the run's total number of steps")
    warmup = int(o.warmup_steps)

    def factor(step):
        step = jnp.asarray(step, jnp.float32)
        ramp = jnp.minimum(1.0, (step + 1.0) / warmup) if warmup > 0 else 1.0
        progress = jnp.clip((step - warmup) / max(total_steps - warmup, 1), 0.0, 1.0)
        return ramp * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

    return factor


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int | None = None) -> optax.Schedule:
    """The learning rate at each step: ``optimizer.learning_rate`` times ``learning_rate_factor``."""
    lr, factor = config.optimizer.learning_rate, learning_rate_factor(config, total_steps)
    return lambda step: lr * factor(step)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int | None = None) -> optax.GradientTransformation:
    """Adam(W) with the schedule's factor, *without* the base learning rate.

    The base rate lives in ``TrainState.hparams`` and multiplies the updates in the
    train step; ``-learning_rate_factor`` here completes lr_t (e.g. lr / (1 + decay * t)).
    """
    o = config.optimizer
    factor = learning_rate_factor(config, total_steps)
    parts = [optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps)]
    if o.weight_decay > 0:
        parts.append(optax.add_decayed_weights(o.weight_decay))
    parts.append(optax.scale_by_schedule(lambda step: -factor(step)))
    return optax.chain(*parts)


def init_variables(model, image_size: int, key: jax.Array) -> dict:
    """``model.init`` on a batch-1 dummy image, jitted."""
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    init = jax.jit(lambda k: model.init({"params": k}, dummy, train=False)).lower(key)
    # init runs once; on CPU, XLA's optimising backend spends ~20 s on its many
    # unrolled random-number kernels for nothing (measured: 28 s -> 7 s compile).
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
    return init.compile(compiler_options=options)(key)


def create_train_state(
    config: ml_collections.ConfigDict, model, image_size: int, num_classes: int, total_steps: int | None = None
) -> TrainState:
    """Fresh parameters, optimizer state and zero centers, from ``config.seed``.

    ``total_steps``: the run's length, which the cosine schedule needs.
    """
    root = jax.random.PRNGKey(config.seed)
    init_key, state_key = jax.random.split(root)
    variables = init_variables(model, image_size, init_key)
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    _, aux = jax.eval_shape(lambda v: model.apply(v, dummy, train=False), variables)
    tx = make_optimizer(config, total_steps)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        centers=jnp.zeros((num_classes, aux["embedding"].shape[-1]), jnp.float32),
        rng=state_key,
        hparams=hparams_from_config(config),
        apply_fn=model.apply,
        tx=tx,
    )


def init_from_file(state: TrainState, path: str) -> tuple[TrainState, str]:
    """``state`` with the backbone of ``model.init_from`` (``amobilenet_jax.imagenet``) in its
    params and batch statistics, CBAM and classifier as initialised; and the line that says so.

    For a fresh run only: a resumed run's checkpoint is never overwritten.
    """
    from amobilenet_jax import imagenet

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    loaded, tensors, count = imagenet.init_backbone(variables, path)
    placed = jax.tree.map(
        lambda old, new: old if new is old else jax.device_put(np.asarray(new, old.dtype), old.sharding),
        variables,
        loaded,
    )
    backbone = set(imagenet.backbone_modules())
    fresh = {"CBAM" if "_cbam" in name else name for name in state.params if name not in backbone}
    fresh_line = " and ".join(sorted(fresh, key=lambda n: (n != "CBAM", n))) or "nothing"
    line = f"initialised {tensors} backbone tensors ({count / 1e6:.1f}M parameters) from {path}; {fresh_line} fresh"
    return state.replace(params=placed["params"], batch_stats=placed["batch_stats"]), line


def state_without_data(config: ml_collections.ConfigDict) -> TrainState:
    """A fresh train state of ``config``'s model, built without reading the data set.

    For restoring a checkpoint's structure (exporting weights): the optimizer's state has
    the same structure whatever the run's length, so the schedule gets a stand-in one.
    """
    from amobilenet_jax.data import class_names

    num_classes = len(class_names(config.data.name))
    model = build_model(config.model, num_classes)
    return create_train_state(config, model, config.data.image_size, num_classes, total_steps=1)


def _prepare(images, config: ml_collections.ConfigDict, rng=None):
    """uint8 native-size batch -> normalised float batch at ``data.image_size``.

    Evaluation and prediction (``amobilenet_jax.inference``) call it without ``rng``, so a
    face at prediction time goes through exactly the resize and normalisation of training.
    """
    size = config.data.image_size
    x = resize(images, size) if rng is None else augment(rng, images, size, config.data.augment)
    return normalize(x, config.data.normalize_mean, config.data.normalize_std)


prepare_images = _prepare


def make_train_step(config: ml_collections.ConfigDict, total_steps: int | None = None) -> Callable:
    """Returns the pure ``train_step(state, batch) -> (state, TrainMetrics)``."""
    lr_factor = learning_rate_factor(config, total_steps)
    smoothing = float(config.loss.label_smoothing)

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        center_weight = state.hparams["center_weight"]
        learning_rate = state.hparams["learning_rate"]
        step_key = jax.random.fold_in(state.rng, state.step)
        augment_key, dropout_key = jax.random.split(step_key)
        images = batch["image"]
        if images.dtype == jnp.uint8:  # device pipeline: augment here; the grain pipeline did it on the host
            images = _prepare(images, config, augment_key)
        targets = batch.get("target", batch["label"])
        labels = batch["label"]

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            (logits, aux), updates = state.apply_fn(
                variables, images, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
            )
            softmax_loss = losses.softmax_cross_entropy(logits, targets, smoothing)
            center_loss = losses.center_loss(aux["embedding"], labels, state.centers)
            loss = softmax_loss + center_weight * center_loss
            return loss, (logits, aux["embedding"], updates, softmax_loss, center_loss)

        grads, (logits, embedding, updates, softmax_loss, center_loss) = jax.grad(loss_fn, has_aux=True)(state.params)
        loss = softmax_loss + center_weight * center_loss
        finite = jax.tree.reduce(lambda ok, g: ok & jnp.all(jnp.isfinite(g)), grads, jnp.isfinite(loss))
        param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        param_updates = jax.tree.map(lambda u: learning_rate * u, param_updates)
        # With center_weight 0 the centers still move, but nothing reads them.
        centers = losses.center_update(
            state.centers, jax.lax.stop_gradient(embedding), labels, state.hparams["center_update_rate"]
        )
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, param_updates),
            batch_stats=updates["batch_stats"],
            opt_state=opt_state,
            centers=centers,
        )
        metrics = TrainMetrics.single_from_model_output(
            loss=loss,
            softmax_loss=softmax_loss,
            center_loss=center_loss,
            accuracy=jnp.mean(jnp.argmax(logits, -1) == labels),
            learning_rate=learning_rate * lr_factor(state.step),
            nonfinite_step=jnp.where(finite, 0, state.step + 1),
        )
        return new_state, metrics

    return train_step


def make_eval_step(config: ml_collections.ConfigDict, num_classes: int, num_attention: int = 4) -> Callable:
    """Returns ``eval_step(state, batch) -> (confusion [K, K], attention)``.

    Confusion rows are true classes; with ``eval_flip`` the logits of each image and of
    its mirror image are summed before the argmax. ``attention`` holds the CBAM spatial maps of the
    batch's first ``num_attention`` images (empty without CBAM): the maps come out of
    the same forward pass, so showing them costs no second compile.
    """

    def eval_step(state: TrainState, batch: dict[str, jax.Array]):
        images = _prepare(batch["image"], config)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        logits, aux = state.apply_fn(variables, images, train=False, return_attention=True)
        if config.eval_flip:  # test-time flip: the image and its mirror vote together
            mirrored, _ = state.apply_fn(variables, images[:, :, ::-1, :], train=False)
            logits = logits + mirrored
        true = jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.int32)
        pred = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes, dtype=jnp.int32)
        confusion = (true * batch["mask"][:, None].astype(jnp.int32)).T @ pred
        attention = {name: amap[:num_attention] for name, amap in aux.get("attention", {}).items()}
        return confusion, attention

    return eval_step


def params_fingerprint(params) -> str:
    """sha256 of the float32 parameters, concatenated in tree order."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        digest.update(np.ascontiguousarray(np.asarray(leaf, dtype=np.float32)).tobytes())
    return digest.hexdigest()


def count_params(params) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def forward_flops(model, variables, image_size: int) -> float:
    """FLOPs of one batch-1 inference forward pass, from XLA's cost analysis."""
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    # The lowered (not compiled) program's cost analysis: no compile needed.
    cost = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, dummy).cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


# ---------------------------------------------------------------- the run


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

    def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset | None = None, devices=None):
        self.config = config
        self.dataset = dataset if dataset is not None else load_dataset(config.data)
        self.num_classes = self.dataset.num_classes
        self.mesh = make_mesh(devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.model = build_model(config.model, self.num_classes)
        if config.train.batch_size % self.mesh.devices.size:
            raise ValueError(
                f"train.batch_size={config.train.batch_size} is not divisible by the {self.mesh.devices.size} devices"
            )
        if config.data.pipeline not in ("device", "grain"):
            raise ValueError(f"data.pipeline must be 'device' or 'grain', got {config.data.pipeline!r}")
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        train = self.dataset.split("train")
        self.train_split = DeviceSplit(train, self.mesh) if config.data.pipeline == "device" else None
        self.order = TrainOrder(config.seed, train.labels, config.train.batch_size, config.data.balance)
        self.total_steps = num_train_steps(config, self.order.steps_per_epoch)
        self.train_step = jax.jit(
            make_train_step(config, self.total_steps), donate_argnums=0, out_shardings=self.replicated
        )
        self.eval_step = jax.jit(make_eval_step(config, self.num_classes), out_shardings=self.replicated)
        self._eval_splits: dict[str, DeviceSplit] = {}
        # "auto": Valid where the data set has one (select on it), else Test (RAF-DB, synthetic).
        self.default_eval_split = config.eval_split
        if config.eval_split == "auto":
            self.default_eval_split = "valid" if "valid" in self.dataset.splits else "test"

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

    def eval_split(self, name: str) -> DeviceSplit:
        if name not in self._eval_splits:
            self._eval_splits[name] = DeviceSplit(self.dataset.split(name), self.mesh)
        return self._eval_splits[name]

    def evaluate(self, state: TrainState, split: str, progress: bool = False) -> dict:
        """Metrics over the whole split; ``result["attention"]`` holds the first images' CBAM maps.

        ``progress``: print how far it got every few seconds (long splits, slow machines).
        """
        confusion, attention = None, None
        device_split = self.eval_split(split)
        batch_size = self.config.train.eval_batch_size
        started = last_print = time.perf_counter()
        for i, batch in enumerate(device_split.eval_batches(batch_size)):
            counts, maps = self.eval_step(state, batch)
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


PROGRESS_EVERY_S = 5.0  # a long evaluation prints how far it got this often


def _progress_line(step, total, steps_per_epoch, images_per_s, eta_s, scalars) -> str:
    eta = time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0)))
    return (
        f"step {step}/{total} epoch {step / steps_per_epoch:.2f} loss {scalars['train/loss']:.4f} "
        f"acc {scalars['train/accuracy']:.3f} {images_per_s:.0f} img/s ETA {eta}"
    )


class BestEval:
    """The best evaluation so far, carried in the checkpoint's data position across resumes."""

    def __init__(self, position: dict):
        saved = position.get("best_eval") or {}
        self.accuracy = saved.get("accuracy")
        self.epoch = saved.get("epoch")

    def update(self, epoch: float, split: str, result: dict) -> str:
        """Records ``result`` and returns the console line for it."""
        if self.accuracy is None or result["accuracy"] > self.accuracy:
            self.accuracy, self.epoch = result["accuracy"], epoch
        return (
            f"epoch {epoch:g} {split} accuracy {result['accuracy']:.4f} "
            f"mean per class {result['mean_class_accuracy']:.4f} best {self.accuracy:.4f} (epoch {self.epoch:g})"
        )

    def position(self) -> dict:
        return {} if self.accuracy is None else {"best_eval": {"accuracy": self.accuracy, "epoch": self.epoch}}


def check_finite(first_bad_step, mngr, names: list[str] | None = None) -> None:
    """Raises ``NonFiniteError`` when the accumulated ``nonfinite_step`` metric saw a NaN or Inf.

    ``first_bad_step``: 0 (none) or the 1-based step, one per point for a vectorised group
    (``names`` then says which). Called before anything is evaluated or saved, so that no
    checkpoint ever holds a non-finite state.
    """
    cpu_kernels.check_frames()  # a host counter: warns once if the compiled CPU kernel met a frame it refused
    steps = np.atleast_1d(np.asarray(jax.device_get(first_bad_step)))
    bad = [i for i, s in enumerate(steps) if s > 0]
    if not bad:
        return
    step = int(min(steps[i] for i in bad))
    which = f" in {', '.join(names[i] for i in bad)}" if names else ""
    mngr.wait_until_finished()
    last = mngr.latest_step()
    good = f"the last good checkpoint is {checkpoints.step_path(mngr, last)}" if last is not None else "no checkpoint"
    raise NonFiniteError(
        f"non-finite loss or gradient at step {step}{which}; training stopped, {good} "
        "(nothing non-finite was saved); lower optimizer.learning_rate or check the data"
    )


def interrupted(stop: StopRequest, mngr, step: int, total: int) -> Interrupted:
    """The error that ends a run stopped by a signal, after its checkpoint at ``step`` is written."""
    mngr.wait_until_finished()
    return Interrupted(
        f"stopped by {stop.requested} at step {step}/{total}; checkpoint {checkpoints.step_path(mngr, step)} saved; "
        "run the same command again to resume",
        stop.exit_code,
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, dataset: Dataset | None = None) -> dict:
    """Trains (resuming from ``workdir``'s newest checkpoint), evaluates, writes results.

    Returns the dict written to ``workdir/results.json``. SIGTERM/SIGINT save a checkpoint at
    the current step and raise ``Interrupted``; a NaN or Inf raises ``NonFiniteError``.
    """
    os.makedirs(workdir, exist_ok=True)
    checkpoints.check_workdir(workdir, config)  # before the data is loaded: a wrong run fails fast
    exp = Experiment(config, dataset)
    mngr = checkpoints.run_manager(workdir, config)
    try:
        return _train(exp, mngr, config, workdir)
    finally:
        mngr.close()  # also on an error: Orbax's writer threads must not outlive the interpreter


def _train(exp: Experiment, mngr, config: ml_collections.ConfigDict, workdir: str) -> dict:
    is_chief = jax.process_index() == 0
    resuming = bool(mngr.all_steps())
    state, position = checkpoints.restore_run(mngr, exp.init_state(), config)  # raises before anything is written
    if config.model.init_from and not resuming:  # a checkpoint always wins over model.init_from
        state, line = init_from_file(state, config.model.init_from)
        if is_chief:
            print(line, flush=True)
    if is_chief:
        checkpoints.write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    start_step = int(jax.device_get(state.step))
    writer = TensorBoardWriter(workdir, enabled=is_chief)
    if start_step == 0:
        writer.write_hparams(flat_hparams(config))
    else:
        print(f"resuming from checkpoint at step {start_step}", flush=True)

    total, per_epoch, bs = exp.total_steps, exp.order.steps_per_epoch, config.train.batch_size
    eval_every = max(1, config.train.eval_every_epochs) * per_epoch
    config_json = json.loads(config.to_json())
    best = BestEval(position)
    train_time = 0.0
    accumulated = None
    last_log_time, last_log_step = time.perf_counter(), start_step
    with StopRequest() as stop:
        for step, batch in exp.train_batches(start_step, position.get("grain_iterator")):
            state, metrics = exp.train_step(state, batch)
            accumulated = metrics if accumulated is None else accumulated.merge(metrics)
            done = step + 1
            log_now = done % config.train.log_every_steps == 0 or done == total
            stopping = stop.requested is not None  # read once: a signal may arrive at any line
            eval_now = done % eval_every == 0 and done != total and not stopping
            save_now = done % config.train.checkpoint_every_steps == 0 or done == total or stopping
            if log_now or eval_now or save_now:
                check_finite(accumulated.nonfinite_step.step, mngr)
            if log_now:
                computed = accumulated.compute()  # host sync
                scalars = {f"train/{k}": float(v) for k, v in computed.items() if k != "nonfinite_step"}
                now = time.perf_counter()
                elapsed = now - last_log_time
                train_time += elapsed
                images_per_s = (done - last_log_step) * bs / max(elapsed, 1e-9)
                scalars["train/images_per_s"] = images_per_s
                writer.write_scalars(done, scalars)
                if is_chief:
                    eta_s = (total - done) * bs / images_per_s
                    print(_progress_line(done, total, per_epoch, images_per_s, eta_s, scalars), flush=True)
                accumulated, last_log_time, last_log_step = None, now, done
            if eval_now:
                paused = time.perf_counter()
                result = _write_eval(writer, exp, state, done)
                if is_chief:
                    print(best.update(done / per_epoch, exp.default_eval_split, result), flush=True)
                last_log_time += time.perf_counter() - paused  # evaluation time is not training time
            if save_now:
                checkpoints.save(mngr, state, config_json, {**exp.data_position(done), **best.position()})
            if stopping:
                raise interrupted(stop, mngr, done, total)
    mngr.wait_until_finished()

    result = final_results(exp, state, config, workdir, writer, train_time, start_step, best)
    writer.close()
    return result


def _write_eval(writer: TensorBoardWriter, exp: Experiment, state: TrainState, step: int) -> dict:
    split = exp.default_eval_split
    result = exp.evaluate(state, split, progress=True)
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


def final_results(exp, state, config, workdir, writer, train_time, start_step, best: BestEval, extra=None) -> dict:
    """The last evaluation; writes ``results.json``, the confusion matrix and the curves."""
    step = int(jax.device_get(state.step))
    split = exp.default_eval_split
    result = _write_eval(writer, exp, state, step)
    png = result.pop("confusion_png")
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    params = jax.device_get(state.params)
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
    line = best.update(step / exp.order.steps_per_epoch, split, result)
    result["best_accuracy"], result["best_epoch"] = best.accuracy, best.epoch
    if jax.process_index() == 0:
        checkpoints.write_atomic(os.path.join(workdir, "confusion_matrix.png"), png)
        # A resumed run adds its training time to what the earlier results recorded.
        previous = checkpoints.read_json(os.path.join(workdir, "results.json"))
        if start_step > 0 and previous and previous.get("final_step", 0) <= start_step:
            result["train_time_s"] += previous.get("train_time_s", 0.0)
        checkpoints.write_json_atomic(os.path.join(workdir, "results.json"), result)
        writer.flush()
        curves = evaluation.training_curves_png(read_scalars(workdir), os.path.basename(os.path.abspath(workdir)))
        checkpoints.write_atomic(os.path.join(workdir, "training_curves.png"), curves)
        print(line, flush=True)
        print(f"final {split} accuracy {result['accuracy']:.4f} at step {step}; results in "
              f"{os.path.join(workdir, 'results.json')}", flush=True)  # fmt: skip
    return result


def flat_hparams(config: ml_collections.ConfigDict) -> dict:
    return checkpoints.flatten(json.loads(config.to_json()))


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, split: str | None = None) -> dict:
    """``--mode eval``: the newest checkpoint in ``workdir`` on ``split`` (default ``eval_split``)."""
    if not os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        from amobilenet_jax import weights

        if os.path.isfile(os.path.join(workdir, weights.WEIGHTS_FILE)):
            return _evaluate_weights(config, workdir, os.path.join(workdir, weights.WEIGHTS_FILE), split)
        raise RunNotFoundError(
            f"{workdir}: not a run directory (no {checkpoints.CHECKPOINT_DIR}/ or {weights.WEIGHTS_FILE} to evaluate)"
        )
    checkpoints.check_workdir(workdir, config)
    mngr = checkpoints.run_manager(workdir, config)
    try:
        if mngr.latest_step() is None:
            raise RunNotFoundError(f"{os.path.join(workdir, checkpoints.CHECKPOINT_DIR)}: no checkpoint to evaluate")
        exp = Experiment(config)
        split = split or exp.default_eval_split
        exp.dataset.split(split)  # a missing split is an error before the model is built
        state, _ = checkpoints.restore_run(mngr, exp.init_state(), config)
        step = int(jax.device_get(state.step))
        print(f"evaluating {split} ({len(exp.dataset.split(split))} images) at step {step}", flush=True)
        result = exp.evaluate(state, split, progress=True)
    finally:
        mngr.close()
    return _record_eval(workdir, result, split=split, step=step)


def _record_eval(workdir: str, result: dict, **fields) -> dict:
    """``result`` without the attention maps, plus ``fields``, written to ``eval_<split>.json``."""
    result.pop("attention")
    result.update(fields)
    if jax.process_index() == 0:
        checkpoints.write_json_atomic(os.path.join(workdir, f"eval_{result['split']}.json"), result)
    return result


def _evaluate_weights(config: ml_collections.ConfigDict, workdir: str, path: str, split: str | None) -> dict:
    """``--mode eval`` of a shipped model: a weights file and its config.json, no checkpoint."""
    from amobilenet_jax import weights

    exp = Experiment(config)
    split = split or exp.default_eval_split
    exp.dataset.split(split)
    state = weights.restore_into(exp.init_state(), path)
    print(f"evaluating {split} ({len(exp.dataset.split(split))} images) with {path}", flush=True)
    result = exp.evaluate(state, split, progress=True)
    return _record_eval(workdir, result, split=split, step=None, weights=path)
