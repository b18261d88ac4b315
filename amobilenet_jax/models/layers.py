"""Building blocks shared by the model family: conv + BN, depthwise convolution (the
convolutions themselves are ``amobilenet_jax.kernels``).

All modules are NHWC, compute in ``dtype`` and keep float32 parameters.

Speed on CPU (measured in experiments/speed/README.md) shaped three choices here:

- Depthwise conv: XLA's grouped convolution (``feature_group_count``) is several
  times slower on CPU than the same arithmetic written as nine shifted multiply-adds,
  which XLA fuses into one loop; the ``shift`` implementation has a hand-written
  backward pass. XLA:CPU emits that pass's kernel gradient as thousands of small ops,
  so ``shift_ffi`` computes it in one compiled loop (kernels/cpu_kernels.py). All
  implementations share one parameter layout, ``kernel`` of shape ``(k, k, 1, C)``,
  so a checkpoint trained with one runs with another.
- Dense convs run as matmuls (1x1 directly, the stem via im2col).
- BatchNorm and its activation are one op with a two-reduction backward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from amobilenet_jax.kernels import conv_dense_dot, depthwise_conv

Dtype = Any


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


# Images per chunk of the kernel-gradient reduction are chosen so one chunk's input
# stays in a core's cache: k*k passes over the whole batch's activation (several MB)
# ran several times slower on CPU. A single variadic reduction over all taps (one
# loop, no copied windows) measured no faster in the whole train step.


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
        return depthwise_conv(x, kernel, self.stride, self.impl)


def _act_mask(z, activation: str):
    """Derivative of the activation at pre-activation ``z`` (0/1 for the ReLU family)."""
    if activation == "relu6":
        return ((z > 0) & (z < 6)).astype(z.dtype)
    if activation == "relu":
        return (z > 0).astype(z.dtype)
    raise ValueError(activation)


_FUSED_ACTIVATIONS = ("relu6", "relu", "linear")


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_act(x, scale, bias, epsilon: float, activation: str):
    """Training-mode batch norm over all axes but the last, then the activation.

    Returns ``(y, mean, var)`` with the biased batch variance, as ``flax.linen.BatchNorm``
    does. ``mean`` and ``var`` feed the running averages only and carry no gradient.
    The backward pass is the textbook two-reduction form, with the activation's mask
    folded in, so XLA makes two passes over the activation instead of autodiff's many.
    """
    return _bn_fwd(x, scale, bias, epsilon, activation)[0]


def _bn_stats(x):
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=axes)
    var = jnp.maximum(jnp.mean(jnp.square(xf), axis=axes) - jnp.square(mean), 0.0)
    return mean, var


def _bn_fwd(x, scale, bias, epsilon, activation):
    mean, var = _bn_stats(x)
    rstd = jax.lax.rsqrt(var + epsilon)
    mul = (scale * rstd).astype(x.dtype)
    add = (bias - mean * scale * rstd).astype(x.dtype)
    z = x * mul + add
    act = ACTIVATIONS[activation]
    y = z if act is None else act(z)
    return (y, mean, var), (x, mean, rstd, scale, bias)


def _bn_bwd(epsilon, activation, residuals, cotangents):
    del epsilon
    x, mean, rstd, scale, bias = residuals
    g = cotangents[0]  # cotangents of mean/var are ignored: they only update statistics
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    xf = x.astype(jnp.float32)
    if ACTIVATIONS[activation] is not None:
        g = g * _act_mask(((xf - mean) * rstd * scale + bias).astype(x.dtype), activation)
    gf = g.astype(jnp.float32)
    # Written over x itself rather than xhat = (x - mean) * rstd: XLA would keep xhat as
    # a whole activation, written out and read back by each of its three uses
    # (measured slower on CPU, experiments/speed/README.md).
    # sum(g * xhat) = rstd * (sum(g * x) - mean * sum(g)), the same identity as the
    # forward pass's E[x^2] - E[x]^2 (flax's default too).
    dbias = jnp.sum(gf, axis=axes)
    dscale = rstd * (jnp.sum(gf * xf, axis=axes) - mean * dbias)
    # dx = scale * rstd * (g - dbias / count - xhat * dscale / count) = mul * g + b * x + c
    mul = scale * rstd
    b = -mul * rstd * dscale / count
    dx = mul * gf + b * xf + (-mul * dbias / count - b * mean)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


batch_norm_act.defvjp(_bn_fwd, _bn_bwd)


class BatchNormAct(nn.Module):
    """BatchNorm followed by an activation, with the variables of ``flax.linen.BatchNorm``.

    ``params``: ``scale``, ``bias``; ``batch_stats``: ``mean``, ``var`` (running
    averages with ``momentum``), so checkpoints are interchangeable with nn.BatchNorm.
    """

    momentum: float = 0.99
    epsilon: float = 1e-3
    activation: str = "linear"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        x = x.astype(self.dtype)
        if not train:
            rstd = jax.lax.rsqrt(ra_var.value + self.epsilon)
            z = x * (scale * rstd).astype(self.dtype) + (bias - ra_mean.value * scale * rstd).astype(self.dtype)
            act = ACTIVATIONS[self.activation]
            return z if act is None else act(z)
        y, mean, var = batch_norm_act(x, scale, bias, self.epsilon, self.activation)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y


class Conv(nn.Module):
    """Bias-free dense conv computed as a matmul (``conv_dense_dot``).

    Same ``kernel`` (HWIO) and initialiser as ``flax.linen.Conv(use_bias=False)``. On
    CPU, XLA ran 1x1 convolutions and their gradients far below matmul speed
    (experiments/speed/README.md, "What made training faster").
    """

    features: int
    kernel_size: int = 1
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3),
            (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
            jnp.float32,
        )
        return conv_dense_dot(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)


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
            x = Conv(self.features, self.kernel_size, self.stride, self.dtype, name="conv")(x)
        fused = self.activation if self.activation in _FUSED_ACTIVATIONS else "linear"
        x = BatchNormAct(self.bn_momentum, self.bn_epsilon, fused, self.dtype, name="bn")(x, train)
        act = None if fused == self.activation else ACTIVATIONS[self.activation]
        return x if act is None else act(x)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds channel counts the way the MobileNet papers' reference code does."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new
