"""Depthwise k x k convolution, one parameter layout (``kernel`` of shape ``(k, k, 1, C)``) over
several implementations, so a checkpoint trained with one runs with another:

- ``xla``: XLA's grouped convolution (``feature_group_count``); the default off the CPU.
- ``shift``: nine shifted multiply-adds, which XLA:CPU fuses into one loop (several times
  faster on CPU than the grouped convolution), with a hand-written backward pass.
- ``shift_ffi``: ``shift`` whose kernel gradient (thousands of small ops in XLA:CPU) is one
  compiled loop (``cpu_kernels``) where that loop can run; the CPU default on one device.
- ``shift_autodiff``: ``shift`` with JAX's own backward pass, for checking.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from amobilenet_jax.kernels import cpu_kernels
from amobilenet_jax.kernels.windows import out_size, pad_same, shift_sum, taps

DEPTHWISE_IMPLS = ("xla", "shift", "shift_ffi", "shift_autodiff", "auto")


def resolve_depthwise_impl(impl: str, backend: str | None = None, device_count: int | None = None) -> str:
    """Maps ``auto`` to the implementation measured fastest on ``backend`` (default: the current
    one) with ``device_count`` devices (default: the current count)."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"model.depthwise_impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    # CPU: shifted multiply-adds fuse into one loop, several times faster than XLA's grouped
    # conv, and the compiled kernel gradient is faster still (experiments/speed/README.md).
    # It has no partitioning rule, so with several devices (a sharded batch) auto keeps the
    # plain shift. Elsewhere the vendor library's grouped conv is the default.
    if (backend or jax.default_backend()) != "cpu":
        return "xla"
    count = jax.device_count() if device_count is None else device_count
    # Whether the compiled loop can run is asked when a gradient is first traced
    # (_kernel_grad_compiled), where it falls back to XLA's: the forward pass is the same, and
    # a process that only predicts does not import and check numba's kernel (~0.6 s).
    return "shift_ffi" if count == 1 else "shift"


def depthwise_conv_shift_autodiff(x, kernel, stride: int):
    """Depthwise conv as k*k shifted multiply-adds, differentiated by JAX."""
    k = kernel.shape[0]
    out_h, out_w = out_size(x.shape[1], k, stride), out_size(x.shape[2], k, stride)
    return shift_sum(pad_same(x, k), kernel, stride, out_h, out_w)


_DK_CHUNK_BYTES = 1 << 19


def _kernel_grad(x, dy, k: int, stride: int, padded: bool = False):
    """dL/dkernel[i, j, 0, c] = sum over batch and space of tap (i, j)'s input times dy.

    ``padded``: x already carries its k // 2 padding (``pad_same``)."""
    n = x.shape[0]
    per_image = x[0].size * x.dtype.itemsize
    chunk = max(1, min(n, _DK_CHUNK_BYTES // max(per_image, 1)))
    while n % chunk:
        chunk -= 1
    out_h, out_w = dy.shape[1], dy.shape[2]

    def tap_sums(xc, dyc):
        views = taps(xc if padded else pad_same(xc, k), k, stride, out_h, out_w)
        return jnp.stack([jnp.sum(view * dyc, axis=(0, 1, 2), dtype=jnp.float32) for _, view in views])

    if chunk == n:
        total = tap_sums(x, dy)
    else:
        xs = x.reshape(n // chunk, chunk, *x.shape[1:])
        dys = dy.reshape(n // chunk, chunk, *dy.shape[1:])
        total, _ = jax.lax.scan(
            lambda acc, xd: (acc + tap_sums(*xd), None), jnp.zeros((k * k, x.shape[-1]), jnp.float32), (xs, dys)
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
    """The conv of an input ``xp`` already padded by ``pad_same``.

    Taking the padded input keeps it as the one residual of the backward pass: with the
    padding inside, XLA wrote the (fused) producer's output twice, padded for the
    forward pass and unpadded for the kernel gradient.
    """
    k = kernel.shape[0]
    out_h, out_w = out_size(xp.shape[1] - 2 * (k // 2), k, stride), out_size(xp.shape[2] - 2 * (k // 2), k, stride)
    return shift_sum(xp, kernel, stride, out_h, out_w)


def depthwise_conv_shift(x, kernel, stride: int):
    """Depthwise conv as k*k shifted multiply-adds. x: NHWC, kernel: (k, k, 1, C).

    The backward pass is written by hand: the input gradient is the same shifted
    multiply-add over the (stride-dilated) output gradient with the flipped kernel, and
    the kernel gradient is k*k reductions, run over cache-sized chunks of the batch.
    """
    return _depthwise_shift(pad_same(x, kernel.shape[0]), kernel, stride, False)


def depthwise_conv_shift_ffi(x, kernel, stride: int):
    """``depthwise_conv_shift`` whose kernel gradient is one compiled loop on CPU.

    See kernels/cpu_kernels.py. Float32 on a CPU backend where the loop passes its checks;
    otherwise (with a warning where it fails them) the same as ``depthwise_conv_shift``.
    """
    return _depthwise_shift(pad_same(x, kernel.shape[0]), kernel, stride, True)


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
    dx = shift_sum(dyp, kernel[::-1, ::-1], 1, h, w)
    dk = (_kernel_grad_compiled if compiled_grad else _kernel_grad)(xp, dy, k, stride, True).astype(kernel.dtype)
    # The gradient of the padded input: its border only feeds the padding, whose
    # gradient XLA drops (the slice that transposes pad_same cancels this pad).
    return pad_same(dx, k).astype(xp.dtype), dk


_depthwise_shift.defvjp(_shift_fwd, _shift_bwd)


def depthwise_conv_xla(x, kernel, stride: int):
    """Depthwise conv through XLA's grouped convolution."""
    pad = (kernel.shape[0] // 2, kernel.shape[0] // 2)  # as pad_same
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=(pad, pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


DEPTHWISE_FNS = {
    "shift": depthwise_conv_shift,
    "shift_ffi": depthwise_conv_shift_ffi,
    "shift_autodiff": depthwise_conv_shift_autodiff,
    "xla": depthwise_conv_xla,
}


def depthwise_conv(x, kernel, stride: int, impl: str = "auto"):
    """The depthwise convolution of NHWC ``x`` with ``kernel`` ``(k, k, 1, C)``, SAME padding,
    by the implementation ``impl`` names (``auto``: the fastest measured on this backend)."""
    return DEPTHWISE_FNS[resolve_depthwise_impl(impl)](x, kernel, stride)
