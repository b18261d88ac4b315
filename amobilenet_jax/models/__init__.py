"""Model registry: ``model.name`` picks an architecture; config fields left unset
(None) take that architecture's own default, so sweeping ``model.name`` alone
compares the architectures as their papers define them."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from amobilenet_jax.errors import ConfigError
from amobilenet_jax.models.mobilenet_v1 import BLOCKS, PAPER_CBAM_BLOCKS, MobileNetV1
from amobilenet_jax.models.mobilenet_v2 import MobileNetV2
from amobilenet_jax.models.mobilenet_v3 import MobileNetV3Small

# name -> (module class, defaults for fields the config leaves as None)
MODELS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "mobilenet_v1": (MobileNetV1, {"cbam": False, "linear_depthwise": False, "dropout": 0.5, "blocks": BLOCKS}),
    "amobilenet": (
        MobileNetV1,
        {"cbam": True, "linear_depthwise": True, "cbam_blocks": PAPER_CBAM_BLOCKS, "dropout": 0.5, "blocks": BLOCKS},
    ),
    "mobilenet_v2": (MobileNetV2, {"cbam": False, "dropout": 0.2}),
    "mobilenet_v3_small": (MobileNetV3Small, {"cbam": False, "dropout": 0.2}),
}

# The models whose backbone ImageNet's MobileNet v1 initialises (model.init_from, imagenet.py).
IMAGENET_INIT_MODELS = ("mobilenet_v1", "amobilenet")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
MODEL_FIELDS = (
    "width",
    "dropout",
    "cbam",
    "cbam_blocks",
    "cbam_reduction",
    "cbam_kernel",
    "linear_depthwise",
    "depthwise_impl",
    "stem_stride",
    "blocks",
)
# Fields only some architectures have: set on another one, they are a config error.
ONLY_FOR = {"stem_stride": ("mobilenet_v1", "amobilenet"), "blocks": ("mobilenet_v1", "amobilenet")}


def _blocks(value) -> tuple[tuple[int, int], ...]:
    """``model.blocks`` as the module takes it: (pointwise channels, depthwise stride) pairs."""
    try:
        blocks = tuple((int(channels), int(stride)) for channels, stride in value)
    except (TypeError, ValueError):
        blocks = ()
    if not blocks or any(channels < 1 or stride not in (1, 2) for channels, stride in blocks):
        raise ConfigError(
            f"config: model.blocks must be (channels, stride) pairs, channels >= 1 and stride 1 or 2, got {value!r}"
        )
    return blocks


def model_kwargs(model_config, num_classes: int) -> dict[str, Any]:
    """The resolved constructor arguments: config values, architecture defaults for None."""
    if model_config.name not in MODELS:
        raise ValueError(f"model.name must be one of {sorted(MODELS)}, got {model_config.name!r}")
    _, defaults = MODELS[model_config.name]
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    for field in MODEL_FIELDS:
        value = model_config.get(field)
        if value is None:
            value = defaults.get(field)
        if value is not None:
            if field in ONLY_FOR and model_config.name not in ONLY_FOR[field]:
                raise ConfigError(f"config: model.{field} applies to {' and '.join(ONLY_FOR[field])} only")
            if field == "cbam_blocks":
                value = tuple(value)
            elif field == "blocks":
                value = _blocks(value)
            kwargs[field] = value
    if model_config.get("dtype", "float32") not in DTYPES:
        raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {model_config.dtype!r}")
    return kwargs


def build_model(model_config, num_classes: int) -> nn.Module:
    """Builds the Flax module named by ``model_config.name``."""
    cls, _ = MODELS.get(model_config.name, (None, None))
    kwargs = model_kwargs(model_config, num_classes)
    return cls(dtype=DTYPES[model_config.get("dtype", "float32")], **kwargs)


def init_variables(model, image_size: int, key: jax.Array) -> dict:
    """``model.init`` on a batch-1 dummy image, jitted."""
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    init = jax.jit(lambda k: model.init({"params": k}, dummy, train=False)).lower(key)
    # init runs once; on CPU, XLA's optimising backend spends most of its compile time on the
    # many unrolled random-number kernels, for nothing.
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
    return init.compile(compiler_options=options)(key)


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
