"""Building blocks shared by the model family: conv + BN, depthwise convolution.

All modules are NHWC, compute in ``dtype`` and keep float32 parameters.

Speed on CPU (measured in experiments/benchmarks.md) shaped three choices here:

- Depthwise conv: XLA's grouped convolution (``feature_group_count``) is several
  times slower on CPU than the same arithmetic written as nine shifted multiply-adds,
  which XLA fuses into one loop; the ``shift`` implementation has a hand-written
  backward pass. XLA:CPU emits that pass's kernel gradient as thousands of small ops,
  so ``shift_ffi`` computes it in one compiled loop (models/cpu_kernels.py). All
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

from amobilenet_jax.models import cpu_kernels

Dtype = Any

DEPTHWISE_IMPLS = ("xla", "shift", "shift_ffi", "shift_autodiff", "auto")


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
    # (DESIGN.md table), and the compiled kernel gradient saves a further ~10% of a
    # train step (experiments/benchmarks.md). It has no partitioning rule, so with
    # several devices (a sharded batch) auto keeps XLA's. Elsewhere the vendor
    # library's grouped conv is the default.
    if jax.default_backend() != "cpu":
        return "xla"
    return "shift_ffi" if jax.device_count() == 1 and cpu_kernels.available() else "shift"


def _out_size(size: int, k: int, stride: int) -> int:
    return (size + 2 * (k // 2) - k) // stride + 1


def _taps(xp, k: int, stride: int, out_h: int, out_w: int):
    """Yields ((i, j), view): the strided window of padded ``xp`` that kernel tap (i, j) reads."""
    for i in range(k):
        for j in range(k):
            yield (
                (i, j),
                jax.lax.slice(
                    xp,
                    (0, i, j, 0),
                    (xp.shape[0], i + stride * (out_h - 1) + 1, j + stride * (out_w - 1) + 1, xp.shape[3]),
                    (1, stride, stride, 1),
                ),
            )


def _shift_sum(xp, kernel, stride: int, out_h: int, out_w: int):
    out = None
    for (i, j), view in _taps(xp, kernel.shape[0], stride, out_h, out_w):
        term = view * kernel[i, j, 0]
        out = term if out is None else out + term
    return out


def _pad_same(x, k: int):
    # Symmetric padding k//2 on each side, as PyTorch and the paper's Keras model do
    # for odd kernels; output size is ceil(H / stride).
    p = k // 2
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))


def depthwise_conv_shift_autodiff(x, kernel, stride: int):
    """Depthwise conv as k*k shifted multiply-adds, differentiated by JAX."""
    k = kernel.shape[0]
    out_h, out_w = _out_size(x.shape[1], k, stride), _out_size(x.shape[2], k, stride)
    return _shift_sum(_pad_same(x, k), kernel, stride, out_h, out_w)


# Images per chunk of the kernel-gradient reduction are chosen so one chunk's input
# stays in a core's cache: k*k passes over the whole batch's activation (several MB)
# ran several times slower on CPU. A single variadic reduction over all taps (one
# loop, no copied windows) measured no faster in the whole train step.
_DK_CHUNK_BYTES = 1 << 19


def _kernel_grad(x, dy, k: int, stride: int, padded: bool = False):
    """dL/dkernel[i, j, 0, c] = sum over batch and space of tap (i, j)'s input times dy.

    ``padded``: x already carries its k // 2 padding (``_pad_same``)."""
    n = x.shape[0]
    per_image = x[0].size * x.dtype.itemsize
    chunk = max(1, min(n, _DK_CHUNK_BYTES // max(per_image, 1)))
    while n % chunk:
        chunk -= 1
    out_h, out_w = dy.shape[1], dy.shape[2]

    def taps(xc, dyc):
        views = _taps(xc if padded else _pad_same(xc, k), k, stride, out_h, out_w)
        return jnp.stack([jnp.sum(view * dyc, axis=(0, 1, 2), dtype=jnp.float32) for _, view in views])

    if chunk == n:
        total = taps(x, dy)
    else:
        xs = x.reshape(n // chunk, chunk, *x.shape[1:])
        dys = dy.reshape(n // chunk, chunk, *dy.shape[1:])
        total, _ = jax.lax.scan(
            lambda acc, xd: (acc + taps(*xd), None), jnp.zeros((k * k, x.shape[-1]), jnp.float32), (xs, dys)
        )
    return total.reshape(k, k, 1, x.shape[-1])


def _kernel_grad_compiled(x, dy, k: int, stride: int, padded: bool = False):
    """``_kernel_grad`` by the compiled CPU loop where XLA runs on CPU, by XLA elsewhere."""
    # available_for checks this (k, stride) against a known answer the first time a model uses it.
    if x.dtype != jnp.float32 or dy.dtype != jnp.float32 or not cpu_kernels.available_for(k, stride):
        return _kernel_grad(x, dy, k, stride, padded)
    return jax.lax.platform_dependent(
        x,
        dy,
        cpu=lambda x, dy: cpu_kernels.kernel_grad(x, dy, k, stride, padded),
        default=lambda x, dy: _kernel_grad(x, dy, k, stride, padded),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_shift(xp, kernel, stride: int, compiled_grad: bool):
    """The conv of an input ``xp`` already padded by ``_pad_same``.

    Taking the padded input keeps it as the one residual of the backward pass: with the
    padding inside, XLA wrote the (fused) producer's output twice, padded for the
    forward pass and unpadded for the kernel gradient.
    """
    k = kernel.shape[0]
    out_h, out_w = _out_size(xp.shape[1] - 2 * (k // 2), k, stride), _out_size(xp.shape[2] - 2 * (k // 2), k, stride)
    return _shift_sum(xp, kernel, stride, out_h, out_w)


def depthwise_conv_shift(x, kernel, stride: int):
    """Depthwise conv as k*k shifted multiply-adds. x: NHWC, kernel: (k, k, 1, C).

    The backward pass is written by hand: the input gradient is the same shifted
    multiply-add over the (stride-dilated) output gradient with the flipped kernel, and
    the kernel gradient is k*k reductions, run over cache-sized chunks of the batch.
    """
    return _depthwise_shift(_pad_same(x, kernel.shape[0]), kernel, stride, False)


def depthwise_conv_shift_ffi(x, kernel, stride: int):
    """``depthwise_conv_shift`` whose kernel gradient is one compiled loop on CPU.

    See models/cpu_kernels.py. Float32 on a CPU backend only; otherwise the same as
    ``depthwise_conv_shift``.
    """
    return _depthwise_shift(_pad_same(x, kernel.shape[0]), kernel, stride, True)


def _shift_fwd(xp, kernel, stride, compiled_grad):
    return _depthwise_shift(xp, kernel, stride, compiled_grad), (xp, kernel)


def _shift_bwd(stride, compiled_grad, residuals, dy):
    xp, kernel = residuals
    k = kernel.shape[0]
    p = k // 2
    h, w = xp.shape[1] - 2 * p, xp.shape[2] - 2 * p
    out_h, out_w = dy.shape[1], dy.shape[2]
    lo = k - 1 - k // 2
    # Zero-dilate dy by the stride and pad it so that a stride-1 correlation with the
    # flipped kernel lands exactly on the h x w input grid.
    config = (
        (0, 0, 0),
        (lo, h + k - 1 - lo - (stride * (out_h - 1) + 1), stride - 1),
        (lo, w + k - 1 - lo - (stride * (out_w - 1) + 1), stride - 1),
        (0, 0, 0),
    )
    dyp = jax.lax.pad(dy, jnp.zeros((), dy.dtype), config)
    dx = _shift_sum(dyp, kernel[::-1, ::-1], 1, h, w)
    dk = (_kernel_grad_compiled if compiled_grad else _kernel_grad)(xp, dy, k, stride, True).astype(kernel.dtype)
    # The gradient of the padded input: its border only feeds the padding, whose
    # gradient XLA drops (the slice that transposes _pad_same cancels this pad).
    return _pad_same(dx, k).astype(xp.dtype), dk


_depthwise_shift.defvjp(_shift_fwd, _shift_bwd)


def depthwise_conv_xla(x, kernel, stride: int):
    """Depthwise conv through XLA's grouped convolution."""
    pad = (kernel.shape[0] // 2, kernel.shape[0] // 2)  # as _pad_same
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=(pad, pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


@jax.custom_vjp
def _matmul(x, w):
    """x (M, K) @ w (K, N) whose backward pass is two plain matmuls.

    JAX's own transpose rule ends the weight gradient with a transpose, and XLA:CPU
    then lays the whole cotangent out transposed and runs a slow matmul on it.
    """
    return jax.lax.dot_general(x, w, (((1,), (0,)), ((), ())))


def _matmul_fwd(x, w):
    return _matmul(x, w), (x, w)


def _matmul_bwd(residuals, g):
    x, w = residuals
    dx = jax.lax.dot_general(g, w, (((1,), (1,)), ((), ())))
    dw = jax.lax.dot_general(x, g, (((0,), (0,)), ((), ())))
    return dx.astype(x.dtype), dw.astype(w.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def conv_dense_dot(x, kernel, stride: int):
    """Dense k x k conv (SAME, symmetric padding) as one matmul. x: NHWC, kernel: HWIO.

    A 1x1 conv is the matmul itself; a larger kernel first gathers its k*k taps along
    the channel axis (im2col), which pays off for the 3-channel stem.
    """
    k, _, cin, cout = kernel.shape
    if k == 1 and stride == 1:
        cols = x
    else:
        out_h, out_w = _out_size(x.shape[1], k, stride), _out_size(x.shape[2], k, stride)
        cols = jnp.concatenate([view for _, view in _taps(_pad_same(x, k), k, stride, out_h, out_w)], axis=-1)
    n, h, w, kc = cols.shape
    return _matmul(cols.reshape(n * h * w, kc), kernel.reshape(k * k * cin, cout)).reshape(n, h, w, cout)


DEPTHWISE_FNS = {
    "shift": depthwise_conv_shift,
    "shift_ffi": depthwise_conv_shift_ffi,
    "shift_autodiff": depthwise_conv_shift_autodiff,
    "xla": depthwise_conv_xla,
}


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
    # (measured slower on CPU, experiments/benchmarks.md).
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
    (experiments/benchmarks.md, "What made training faster").
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
