"""A trained model from one weights file and its config.json, ready to classify faces.

    model = inference.load_model()                          # the shipped FERPlus model
    model = inference.load_model(workdir="runs/x")          # a run: its weights.msgpack
    model = inference.load_model(weights="dir/weights.msgpack")  # config.json beside the file
    probabilities = model.probabilities(faces)               # uint8 [N, H, W, C] at model.native_shape

``predict``, ``visualize`` and ``export`` all load through here. A face goes through
``data.augment.prepare_images`` (the resize and normalisation of training and evaluation, one
function) and, as in the run's final evaluation, its test-time views vote too
(``data.augment.vote``: the mirror image with ``eval_flip``, zoomed crops with ``eval_crops``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from amobilenet_jax import weights as weights_lib
from amobilenet_jax.errors import ConfigError, RunNotFoundError

# The FERPlus model the CPU recipe shipped (experiments/ferplus_cpu/): the default of every
# command that takes --workdir/--weights. It is package data, so any install (a wheel too)
# has it; AMOBILENET_JAX_MODEL names another directory or weights file.
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "ferplus_amobilenet")
MODEL_ENV = "AMOBILENET_JAX_MODEL"
# Batches are padded up to one of these sizes, so a stream of varying face counts
# compiles a handful of programs, not one per count.
BUCKETS = (1, 16, 64)


def default_model() -> str:
    return os.environ.get(MODEL_ENV) or SHIPPED_MODEL


def resolve(workdir: str | None = None, weights: str | None = None) -> tuple[str | None, str, str]:
    """``(weights file, config.json, run directory)`` of what the user named."""
    if workdir and weights:
        raise ConfigError("give --workdir or --weights, not both")
    if not workdir and not weights:
        target = default_model()
        workdir, weights = (None, target) if os.path.isfile(target) else (target, None)
        if not os.path.exists(target):
            raise RunNotFoundError(
                f"{target}: the default model is not there (it ships inside the package, under "
                "amobilenet_jax/assets/; reinstall the package, or pass --workdir/--weights)"
            )
    if weights:
        if not os.path.isfile(weights):
            raise RunNotFoundError(f"{weights}: no such weights file")
        run_dir = os.path.dirname(os.path.abspath(weights))
        config_path = os.path.join(run_dir, "config.json")
        if not os.path.isfile(config_path):
            raise RunNotFoundError(f"{weights}: no config.json beside it (a weights file needs its run's config.json)")
        return weights, config_path, run_dir
    if not os.path.isdir(workdir):
        raise RunNotFoundError(f"{workdir}: no such run directory")
    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        raise RunNotFoundError(f"{workdir}: not a run directory (no config.json)")
    path = os.path.join(workdir, weights_lib.WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise RunNotFoundError(
            f"{workdir}: no {weights_lib.WEIGHTS_FILE} (a run writes it when it finishes; "
            f"`python -m amobilenet_jax.ship --workdir {workdir}` writes it from the newest checkpoint)"
        )
    return path, config_path, workdir


class FaceFormat:
    """What a face crop must look like for a model with a ``config``: the stored-image format."""

    config: Any
    # the batch sizes faces are padded to (ascending; the last is the largest call): serve sets
    # finer ones, as its batches vary in size and a padded face costs as much as a real one
    buckets: tuple[int, ...] = BUCKETS

    @property
    def native_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` a face crop is turned into: the stored size of the training data."""
        from amobilenet_jax.data import native_shape

        return native_shape(self.config.data.name)

    @property
    def grayscale(self) -> bool:
        return self.native_shape[2] == 1

    def padded_batches(self, faces: np.ndarray):
        """Yields ``(batch, n)``: uint8 faces in chunks of up to ``buckets[-1]``, each zero-padded
        to a bucket size (a stream of varying face counts compiles a handful of programs), and
        how many of its rows are real. Faces must be ``[N, *native_shape]``."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or tuple(faces.shape[1:]) != self.native_shape:
            raise ValueError(f"faces must be uint8 [N, {', '.join(map(str, self.native_shape))}], got {faces.shape}")
        buckets = self.buckets
        for start in range(0, len(faces), buckets[-1]):
            chunk = faces[start : start + buckets[-1]]
            size = next(b for b in buckets if b >= len(chunk))
            padded = np.zeros((size, *chunk.shape[1:]), np.uint8)
            padded[: len(chunk)] = chunk
            yield padded, len(chunk)

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        return probabilities_from_logits(self.logits(faces), self.config)


@dataclasses.dataclass
class Model(FaceFormat):
    """A model in inference mode: its config, Flax module and variables (params, batch_stats)."""

    config: Any
    module: Any
    variables: dict
    class_names: tuple[str, ...]
    source: str

    @functools.cached_property
    def _forward(self):
        from amobilenet_jax.data.augment import vote

        config, module = self.config, self.module

        def forward(variables, images_uint8, return_attention: bool):
            def apply(x, attention):
                return module.apply(variables, x, train=False, return_attention=attention)

            # as evaluation: the face, its mirror image and its crops vote together
            logits, aux = vote(apply, images_uint8, config, return_attention=return_attention)
            return logits, aux.get("attention", {})

        return jax.jit(forward, static_argnums=2)

    def logits(self, faces: np.ndarray, return_attention: bool = False):
        """Logits ``[N, K]`` (and CBAM spatial maps per block, ``[N, h, w]``, when asked) of
        uint8 faces ``[N, H, W, C]`` at ``native_shape``; any N, in batches of up to 64."""
        out, maps = [], []
        for padded, n in self.padded_batches(faces):
            logits, attention = self._forward(self.variables, jnp.asarray(padded), return_attention)
            out.append(np.asarray(logits)[:n])
            maps.append({k: np.asarray(v)[:n] for k, v in attention.items()})
        logits = np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)
        if not return_attention:
            return logits
        attention = {k: np.concatenate([m[k] for m in maps]) for k in (maps[0] if maps else {})}
        return logits, attention

    def warm_up(self, batch_sizes=(1, 16)) -> None:
        """Compiles the batch sizes a run will use, so the first frames are not slow."""
        for size in batch_sizes:
            self.logits(np.zeros((size, *self.native_shape), np.uint8))


def probabilities_from_logits(logits: np.ndarray, config) -> np.ndarray:
    """Softmax of the mean of the test-time views' logits (``data.augment.num_views``)."""
    from amobilenet_jax.data.augment import num_views

    logits = np.asarray(logits, np.float64) / num_views(config)
    logits = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def load_model(workdir: str | None = None, weights: str | None = None) -> Model:
    """The model of a run directory, a weights file (with config.json beside it) or, given
    neither, the shipped FERPlus model. Errors are one line naming the file."""
    from amobilenet_jax import data
    from amobilenet_jax.config import from_json
    from amobilenet_jax.files import read_json
    from amobilenet_jax.models import build_model

    path, config_path, run_dir = resolve(workdir, weights)
    config = from_json(read_json(config_path), config_path)
    class_names = data.class_names(config.data.name)
    module = build_model(config.model, len(class_names))
    size = config.data.image_size
    shapes = jax.eval_shape(  # the variables' structure, without running an init
        lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    tree = weights_lib.fit({"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}, path)
    variables = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
    return Model(config=config, module=module, variables=variables, class_names=class_names, source=path)


def command_main(name: str, parse_args, run, argv: list[str] | None = None) -> None:
    """The entry of ``predict``, ``visualize`` and ``export``: CPU settings, the compilation
    cache, and a user's error as one line ``NAME: error: ...`` with exit status 2."""
    from amobilenet_jax import runtime
    from amobilenet_jax.errors import UserError

    runtime.configure()
    runtime.enable_compilation_cache()
    args = parse_args(argv)
    try:
        status = run(args)
    except (UserError, ValueError, FileNotFoundError, ImportError) as e:
        print(f"{name}: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
