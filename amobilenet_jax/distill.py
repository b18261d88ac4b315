"""Teachers for knowledge distillation (``loss.distill_from``).

Each teacher is a trained model: a run directory (its ``config.json`` and ``weights.msgpack``) or
a weights file with a ``config.json`` beside it. They are loaded once, before the first step, and
checked against the student (classes, input size, normalisation). They run in inference mode on
the Train split only: on the student's own augmented batch each step (``distill_views='batch'``),
or once on each stored training image (``'stored'``).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from amobilenet_jax import weights
from amobilenet_jax.config import from_json
from amobilenet_jax.data import class_names
from amobilenet_jax.errors import ConfigError, UserError
from amobilenet_jax.files import read_json
from amobilenet_jax.models import build_model


class Teacher(NamedTuple):
    path: str
    model: nn.Module
    variables: dict  # {"params", "batch_stats"} as numpy arrays


def teacher_files(path: str) -> tuple[str, str]:
    """``(config.json, weights file)`` of a teacher named by a run directory or a weights file."""
    if os.path.isdir(path):
        return os.path.join(path, "config.json"), os.path.join(path, weights.WEIGHTS_FILE)
    if os.path.isfile(path):
        return os.path.join(os.path.dirname(path), "config.json"), path
    raise ConfigError(f"config: loss.distill_from: {path}: no such run directory or weights file")


def load_teacher(path: str, student: ml_collections.ConfigDict) -> Teacher:
    """One teacher, checked against the student's data; every problem is a one-line ``ConfigError``."""
    config_path, weights_path = teacher_files(path)
    for needed in (config_path, weights_path):
        if not os.path.isfile(needed):
            raise ConfigError(f"config: loss.distill_from: {path}: {needed} is missing (a finished run has it)")
    saved = read_json(config_path)
    if not isinstance(saved, dict):
        raise ConfigError(f"config: loss.distill_from: {config_path}: not a run's config.json")
    try:
        teacher = from_json(saved, config_path)
    except UserError as e:
        raise ConfigError(f"config: loss.distill_from: {e}") from None
    names = class_names(student.data.name)
    if tuple(class_names(teacher.data.name)) != tuple(names):
        raise ConfigError(
            f"config: loss.distill_from: {path}: its classes ({teacher.data.name}) are not the student's "
            f"({student.data.name})"
        )
    for field in ("image_size", "normalize_mean", "normalize_std"):
        if teacher.data[field] != student.data[field]:
            raise ConfigError(
                f"config: loss.distill_from: {path}: data.{field}={teacher.data[field]!r}, the student's is "
                f"{student.data[field]!r}: a teacher sees the student's batch as it is"
            )
    model = build_model(teacher.model, len(names))
    dummy = jnp.zeros((1, teacher.data.image_size, teacher.data.image_size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda k: model.init({"params": k}, dummy, train=False), jax.random.PRNGKey(0))
    expected = {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}
    try:
        variables = weights.fit(expected, weights_path)
    except UserError as e:
        raise ConfigError(f"config: loss.distill_from: {e}") from None
    return Teacher(path, model, variables)


def load_teachers(config: ml_collections.ConfigDict) -> list[Teacher]:
    """The teachers ``loss.distill_from`` names (none when distillation is off)."""
    if not config.loss.distill_weight > 0:
        return []
    return [load_teacher(path, config) for path in config.loss.distill_from]


STORED_BATCH = 256


def stored_probabilities(teachers: list[Teacher], images, config: ml_collections.ConfigDict) -> np.ndarray:
    """``loss.distill_views='stored'``: the teachers' mean softened prediction on each stored
    image (uint8 ``[N, H, W, C]``), averaged over the whole image and its mirror, float32 ``[N, K]``."""
    from amobilenet_jax.data.augment import prepare_images

    models, variables = [t.model for t in teachers], [t.variables for t in teachers]
    temperature = float(config.loss.distill_temperature)

    @jax.jit
    def predict(variables, batch):
        x = prepare_images(batch, config)
        both = teacher_probabilities(models, variables, x, temperature)
        return 0.5 * (both + teacher_probabilities(models, variables, x[:, :, ::-1, :], temperature))

    out = []
    for start in range(0, len(images), STORED_BATCH):
        chunk = images[start : start + STORED_BATCH]
        padded = (
            np.concatenate([chunk, np.repeat(chunk[-1:], STORED_BATCH - len(chunk), 0)])
            if len(chunk) < STORED_BATCH
            else chunk
        )
        out.append(np.asarray(predict(variables, jnp.asarray(padded)))[: len(chunk)])
    return np.concatenate(out).astype(np.float32)


def teacher_probabilities(models, variables, images: jax.Array, temperature: float) -> jax.Array:
    """The teachers' mean prediction at ``temperature`` (softmax of logits / T), in inference mode,
    as a constant of the student's loss."""
    probs = [jax.nn.softmax(m.apply(v, images, train=False)[0].astype(jnp.float32) / temperature) for m, v in
             zip(models, variables)]  # fmt: skip
    return jax.lax.stop_gradient(sum(probs) / len(probs))
