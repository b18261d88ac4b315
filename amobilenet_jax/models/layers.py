"""Building blocks shared by the model family: conv + BN, depthwise convolution.

All modules are NHWC, compute in ``dtype`` and keep float32 parameters.

The depthwise convolution decides speed on CPU (see DESIGN.md): XLA's grouped
convolution (``feature_group_count``) is several times slower there than the same
arithmetic written as nine shifted multiply-adds, which XLA fuses into one loop.
Both implementations share one parameter layout, ``kernel`` of shape
``(k, k, 1, C)``, so a checkpoint trained with one runs with the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

DEPTHWISE_IMPLS = ("xla", "shift", "auto")


def relu6(x):
    return jnp.clip(x, 0, 6)


def hard_sigmoid(x):
    return relu6(x + 3.0) / 6.0


def hard_swish(x):
    return x * hard_sigmoid(x)


ACTIVATIONS: dict[str, Callable | None] = {
    "relu": nn.relu,
    "relu6": relu6,
    "hard_swish": hard_swish,
    "linear": None,
}


def resolve_depthwise_impl(impl: str) -> str:
    """Maps ``auto`` to the implementation measured fastest on the current backend."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"model.depthwise_impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    # CPU: shifted multiply-adds fuse into one loop; grouped conv is 4-7x slower
    # (DESIGN.md table). Elsewhere the vendor library's grouped conv is the default.
    return "shift" if jax.default_backend() == "cpu" else "xla"


def _same_padding(kernel_size: int) -> tuple[int, int]:
    # Symmetric padding k//2 on each side, as PyTorch and the paper's Keras model do
    # for odd kernels; output size is ceil(H / stride).
    return (kernel_size // 2, kernel_size // 2)


def depthwise_conv_shift(x, kernel, stride: int):
    """Depthwise conv as k*k shifted multiply-adds. x: NHWC, kernel: (k, k, 1, C)."""
    k = kernel.shape[0]
    pad = _same_padding(k)
    h, w = x.shape[1], x.shape[2]
    out_h = (h + sum(pad) - k) // stride + 1
    out_w = (w + sum(pad) - k) // stride + 1
    xp = jnp.pad(x, ((0, 0), pad, pad, (0, 0)))
    out = None
    for i in range(k):
        for j in range(k):
            patch = jax.lax.slice(
                xp,
                (0, i, j, 0),
                (xp.shape[0], i + stride * (out_h - 1) + 1, j + stride * (out_w - 1) + 1, xp.shape[3]),
                (1, stride, stride, 1),
            )
            term = patch * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


def depthwise_conv_xla(x, kernel, stride: int):
    """Depthwise conv through XLA's grouped convolution."""
    k = kernel.shape[0]
    pad = _same_padding(k)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=(pad, pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


DEPTHWISE_FNS = {"shift": depthwise_conv_shift, "xla": depthwise_conv_xla}


class DepthwiseConv(nn.Module):
    """k x k depthwise convolution, no bias, with a selectable implementation."""

    kernel_size: int = 3
    stride: int = 1
    impl: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=(0, 1, 2), out_axis=3),
            (self.kernel_size, self.kernel_size, 1, channels),
            jnp.float32,
        )
        x = x.astype(self.dtype)
        kernel = kernel.astype(self.dtype)
        return DEPTHWISE_FNS[resolve_depthwise_impl(self.impl)](x, kernel, self.stride)


class ConvBN(nn.Module):
    """Conv (dense or depthwise) -> BatchNorm -> optional activation."""

    features: int | None = None  # None: depthwise (keeps channel count)
    kernel_size: int = 1
    stride: int = 1
    activation: str = "relu6"
    depthwise_impl: str = "auto"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        if self.features is None:
            x = DepthwiseConv(self.kernel_size, self.stride, self.depthwise_impl, self.dtype, name="dw")(x)
        else:
            pad = _same_padding(self.kernel_size)
            x = nn.Conv(
                self.features,
                (self.kernel_size, self.kernel_size),
                strides=(self.stride, self.stride),
                padding=(pad, pad),
                use_bias=False,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name="conv",
            )(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="bn",
        )(x)
        act = ACTIVATIONS[self.activation]
        return x if act is None else act(x)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds channel counts the way the MobileNet papers' reference code does."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new
