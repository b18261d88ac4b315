"""The pure training and evaluation steps, and the state they carry (no ``from __future__
import annotations`` here: clu reads the metric classes' annotations at class creation).

``train_step(state, batch) -> (state, metrics)`` is one pure function, jitted once by the
caller. ``TrainState`` holds everything that changes during training and nothing else; the
optimizer (Adam with the schedule's factor) never sees the center-loss class centers, which
move by the paper's Eq. 9.
"""

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import metrics as clu_metrics

from amobilenet_jax import losses
from amobilenet_jax.config import SCHEDULES
from amobilenet_jax.data.augment import degrade, mix, prepare_images, random_erase, vote
from amobilenet_jax.distill import teacher_probabilities
from amobilenet_jax.errors import ConfigError
from amobilenet_jax.models import build_model, init_variables


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
    distill_loss: clu_metrics.Average.from_output("distill_loss")
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


class WeightAverageState(NamedTuple):
    """The exponential moving average of the parameters (``optimizer.ema_decay``)."""

    count: jax.Array
    average: Any


def weight_average(decay: float) -> optax.GradientTransformation:
    """Keeps an exponential moving average of the parameters in the optimizer state, leaving the
    updates as they are (as ``optax.lookahead`` keeps its slow weights).

    Each step folds in the parameters the step starts from, with the decay warmed up as
    ``min(decay, (1 + t) / (10 + t))``, so the first steps are not averaged with the initial
    weights for thousands of steps. It lives in the optimizer state, not in ``TrainState``,
    so that runs without it keep their checkpoint layout.
    """

    def init(params):
        return WeightAverageState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.array, params))

    def update(updates, state, params):
        count = state.count + 1
        rate = 1.0 - jnp.minimum(decay, (1.0 + count) / (10.0 + count))
        average = jax.tree.map(lambda a, p: a + rate * (p - a), state.average, params)
        return updates, WeightAverageState(count, average)

    return optax.GradientTransformation(init, update)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int | None = None) -> optax.GradientTransformation:
    """Adam(W) with the schedule's factor, *without* the base learning rate; with
    ``optimizer.ema_decay`` > 0 it also keeps the weights' moving average (``weight_average``).

    The base rate lives in ``TrainState.hparams`` and multiplies the updates in the
    train step; ``-learning_rate_factor`` here completes lr_t (e.g. lr / (1 + decay * t)).
    """
    o = config.optimizer
    factor = learning_rate_factor(config, total_steps)
    parts = [optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps)]
    if o.weight_decay > 0:
        parts.append(optax.add_decayed_weights(o.weight_decay))
    parts.append(optax.scale_by_schedule(lambda step: -factor(step)))
    if o.get("ema_decay", 0.0) > 0:
        parts.append(weight_average(float(o.ema_decay)))
    return optax.chain(*parts)


def _average_index(opt_state) -> int | None:
    for i, part in enumerate(opt_state if isinstance(opt_state, tuple) else ()):
        if isinstance(part, WeightAverageState):
            return i
    return None


def evaluated_params(state: TrainState):
    """The parameters evaluation, the weights file and the shipped model use: the moving
    average where the run keeps one (``optimizer.ema_decay``), else the trained parameters."""
    i = _average_index(state.opt_state)
    return state.params if i is None else state.opt_state[i].average


def evaluated_variables(state: TrainState) -> dict:
    return {"params": evaluated_params(state), "batch_stats": state.batch_stats}


def with_evaluated_params(state: TrainState, params) -> TrainState:
    """``state`` whose trained parameters and moving average (if any) are both ``params``:
    weights loaded from a file, or an initialisation the average must start from."""
    i = _average_index(state.opt_state)
    if i is None:
        return state.replace(params=params)
    parts = list(state.opt_state)
    parts[i] = WeightAverageState(jnp.zeros_like(parts[i].count), jax.tree.map(jnp.array, params))
    return state.replace(params=params, opt_state=tuple(parts))


def create_train_state(
    config: ml_collections.ConfigDict, model, image_size: int, num_classes: int, total_steps: int | None = None
) -> TrainState:
    """Fresh parameters, optimizer state and zero centers, from ``config.seed``.

    ``total_steps``: the run's length, which the cosine schedule needs.
    """
    return _train_state(config, model, image_size, num_classes, total_steps, init_variables)


def abstract_train_state(
    config: ml_collections.ConfigDict, model, image_size: int, num_classes: int, total_steps: int | None = None
) -> TrainState:
    """``create_train_state``'s structure, shapes and dtypes (``jax.ShapeDtypeStruct`` leaves),
    without running the model's init: what restoring a checkpoint needs."""

    def init(module, size, key):
        return module.init({"params": key}, jnp.zeros((1, size, size, 3), jnp.float32), train=False)

    return jax.eval_shape(lambda: _train_state(config, model, image_size, num_classes, total_steps, init))


def _train_state(config, model, image_size: int, num_classes: int, total_steps: int | None, init) -> TrainState:
    """A fresh state with ``init(model, image_size, key)``'s variables."""
    root = jax.random.PRNGKey(config.seed)
    init_key, state_key = jax.random.split(root)
    variables = init(model, image_size, init_key)
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


def state_without_data(config: ml_collections.ConfigDict, abstract: bool = False) -> TrainState:
    """A fresh train state of ``config``'s model, built without reading the data set
    (``abstract``: its shapes and dtypes only, ``abstract_train_state``).

    For restoring a checkpoint's structure (exporting weights): the optimizer's state has
    the same structure whatever the run's length, so the schedule gets a stand-in one.
    """
    from amobilenet_jax.data import class_names

    num_classes = len(class_names(config.data.name))
    model = build_model(config.model, num_classes)
    make = abstract_train_state if abstract else create_train_state
    return make(config, model, config.data.image_size, num_classes, total_steps=1)


def make_train_step(config: ml_collections.ConfigDict, total_steps: int | None = None, teachers=()) -> Callable:
    """Returns the pure ``train_step(state, batch, teacher_variables=()) -> (state, TrainMetrics)``.

    ``teachers``: the distillation teachers' Flax modules (``distill.load_teachers``); their
    variables come in as ``teacher_variables``, an argument, so that jit does not bake them in.
    """
    lr_factor = learning_rate_factor(config, total_steps)
    smoothing = float(config.loss.label_smoothing)
    a = config.data.augment
    erase, mixup, cutmix = float(a.get("erase", 0.0)), float(a.get("mixup", 0.0)), float(a.get("cutmix", 0.0))
    degraded = float(a.get("degrade", 0.0))
    grey_mean, grey_std = float(config.data.normalize_mean), float(config.data.normalize_std)
    sam_rho = float(config.optimizer.get("sam_rho", 0.0))
    distill_weight = float(config.loss.get("distill_weight", 0.0))
    temperature = float(config.loss.get("distill_temperature", 1.0))
    teacher_models = tuple(teachers)
    stored = distill_weight > 0 and config.loss.get("distill_views", "batch") == "stored"
    if distill_weight > 0 and not stored and not teacher_models:
        raise ConfigError("config: loss.distill_weight > 0 but no teachers were loaded (distill.load_teachers)")

    def train_step(state: TrainState, batch: dict[str, jax.Array], teacher_variables=()):
        center_weight = state.hparams["center_weight"]
        learning_rate = state.hparams["learning_rate"]
        step_key = jax.random.fold_in(state.rng, state.step)
        augment_key, dropout_key = jax.random.split(step_key)
        images = batch["image"]
        if images.dtype == jnp.uint8:  # device pipeline: augment here; the grain pipeline did it on the host
            images = prepare_images(images, config, augment_key)
        targets = batch.get("target", batch["label"])
        labels = batch["label"]
        teacher_probs = batch["teacher"] if stored else None  # distill_views='stored': gathered with the batch
        # Keys of their own, so that a run without these augmentations draws what it always drew.
        if degraded > 0:  # a face from a poor frame (in grey levels), before any occlusion
            grey = (images * grey_std + grey_mean) * 255.0
            images = (degrade(jax.random.fold_in(step_key, 3), grey, degraded) / 255.0 - grey_mean) / grey_std
        if erase > 0:
            images = random_erase(jax.random.fold_in(step_key, 1), images, erase)
        if mixup > 0 or cutmix > 0:
            if targets.ndim == 1:
                targets = jax.nn.one_hot(targets, state.centers.shape[0])
            k = targets.shape[-1]
            both = targets if teacher_probs is None else jnp.concatenate([targets, teacher_probs], -1)
            images, both, own = mix(jax.random.fold_in(step_key, 2), images, both, mixup, cutmix)
            targets, teacher_probs = (both, None) if teacher_probs is None else (both[:, :k], both[:, k:])
            labels = jnp.where(own, labels, labels[::-1])  # the center loss takes the larger share's class
        if teacher_models:
            teacher_probs = teacher_probabilities(teacher_models, teacher_variables, images, temperature)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            (logits, aux), updates = state.apply_fn(
                variables, images, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
            )
            softmax_loss = losses.softmax_cross_entropy(logits, targets, smoothing)
            data_loss, distill_loss = softmax_loss, jnp.zeros(())
            if teacher_probs is not None:
                distill_loss = losses.distillation_loss(logits, teacher_probs, temperature)
                data_loss = (1.0 - distill_weight) * softmax_loss + distill_weight * distill_loss
            center_loss = losses.center_loss(aux["embedding"], labels, state.centers)
            loss = data_loss + center_weight * center_loss
            return loss, (logits, aux["embedding"], updates, softmax_loss, distill_loss, center_loss)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (logits, embedding, updates, softmax_loss, distill_loss, center_loss)), grads = grad_fn(state.params)
        if sam_rho > 0:
            # Sharpness-aware minimisation (Foret et al. 2021): the step follows the gradient taken
            # sam_rho uphill along the first one, on the same batch; batch statistics and metrics
            # stay the first pass's.
            norm = optax.global_norm(grads)
            uphill = jax.tree.map(lambda p, g: p + sam_rho * g / (norm + 1e-12), state.params, grads)
            _, grads = grad_fn(uphill)
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
            distill_loss=distill_loss,
            center_loss=center_loss,
            accuracy=jnp.mean(jnp.argmax(logits, -1) == labels),
            learning_rate=learning_rate * lr_factor(state.step),
            nonfinite_step=jnp.where(finite, 0, state.step + 1),
        )
        return new_state, metrics

    return train_step


def make_eval_step(
    config: ml_collections.ConfigDict, num_classes: int, num_attention: int = 4, crops: bool = True
) -> Callable:
    """Returns ``eval_step(state, batch) -> (confusion [K, K], attention)``.

    Confusion rows are true classes; the logits of every test-time view are summed before the
    argmax (``data.augment.vote``: the image, its mirror image with ``eval_flip``, and the
    ``eval_crops`` zoom-ins when ``crops``). ``attention`` holds the CBAM spatial maps of the
    batch's first ``num_attention`` images (empty without CBAM): the maps come out of the
    whole image's forward pass, so showing them costs no second compile.
    """

    def eval_step(state: TrainState, batch: dict[str, jax.Array]):
        variables = evaluated_variables(state)

        def apply(x, return_attention):
            return state.apply_fn(variables, x, train=False, return_attention=return_attention)

        logits, aux = vote(apply, batch["image"], config, crops=crops, return_attention=True)
        true = jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.int32)
        pred = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes, dtype=jnp.int32)
        confusion = (true * batch["mask"][:, None].astype(jnp.int32)).T @ pred
        attention = {name: amap[:num_attention] for name, amap in aux.get("attention", {}).items()}
        return confusion, attention

    return eval_step


def make_logits_step(config: ml_collections.ConfigDict) -> Callable:
    """Returns ``logits_step(state, images) -> [B, K]``: the summed logits of every test-time view
    (``data.augment.vote``), as ``make_eval_step`` argmaxes them; for ensembles, which sum them
    over models first."""

    def logits_step(state: TrainState, images: jax.Array) -> jax.Array:
        variables = evaluated_variables(state)

        def apply(x, return_attention):
            return state.apply_fn(variables, x, train=False, return_attention=return_attention)

        return vote(apply, images, config)[0]

    return logits_step


def params_fingerprint(params) -> str:
    """sha256 of the float32 parameters, concatenated in tree order."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        digest.update(np.ascontiguousarray(np.asarray(leaf, dtype=np.float32)).tobytes())
    return digest.hexdigest()
