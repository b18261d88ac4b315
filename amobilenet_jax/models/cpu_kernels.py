"""The depthwise kernel gradient as one compiled CPU loop, called from XLA as a typed-FFI op.

Why: the kernel gradient of a k x k depthwise conv, dL/dk[i, j, c] = sum over
batch and space of x_pad[n, h*s + i, w*s + j, c] * dy[n, h, w, c], is k*k
reductions that share their inputs. XLA:CPU cannot fuse them: it copies each tap's
window and reduces it separately, k*k passes over the data in thousands of small
ops (20 ms of a 110 ms A-MobileNet train step at batch 64, 48x48, on 2 cores;
experiments/benchmarks.md). One loop that reads ``x`` and ``dy`` once and keeps
the k*k running sums does the same work in a few ms.

How: numba compiles the loop (no C compiler needed), and a numba ``cfunc``
implements XLA's typed foreign-function handler ABI (``xla/ffi/api/c_api.h`` in
jaxlib, API 0.x): it answers XLA's metadata query, then reads the buffers from the
call frame. XLA runs the op like any other, on whichever thread its scheduler
picks, alongside the rest of the backward pass.

Where numba is missing or the platform is not 64-bit little-endian,
``available()`` is False and layers.py keeps the pure-XLA kernel gradient.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

TARGET = "amobilenet_depthwise_kernel_grad"


@functools.cache
def available() -> bool:
    """Whether the compiled kernel is registered with XLA's CPU backend (done on first call)."""
    from amobilenet_jax.models import _ffi_numba

    if not _ffi_numba.SUPPORTED:
        return False
    try:
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(_ffi_numba.handler.address), platform="cpu")
    except Exception as e:  # e.g. a future XLA that no longer accepts this FFI API version
        warnings.warn(f"compiled depthwise kernel gradient not registered ({e}); using XLA's", stacklevel=2)
        return False
    if not _self_check(kernel_grad):
        # The handler reads XLA's call frame at fixed offsets; a frame it cannot read
        # leaves the output unwritten rather than failing, so check a known answer.
        warnings.warn("compiled depthwise kernel gradient gave a wrong result; using XLA's", stacklevel=2)
        return False
    return True


def _reference(x, dy, k: int, stride: int):
    """The kernel gradient in NumPy, for the self-check."""
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    rows, cols = stride * (dy.shape[1] - 1) + 1, stride * (dy.shape[2] - 1) + 1
    taps = [
        np.sum(xp[:, i : i + rows : stride, j : j + cols : stride] * dy, axis=(0, 1, 2))
        for i in range(k)
        for j in range(k)
    ]
    return np.stack(taps).reshape(k, k, 1, x.shape[3])


def _self_check(fn) -> bool:
    """Whether ``fn(x, dy, k, stride)`` matches the NumPy reference on a small case, on CPU."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 8), np.float32)
    dy = rng.standard_normal((2, 3, 3, 8), np.float32)
    # available() may first run while a model is being traced: compute eagerly.
    with jax.ensure_compile_time_eval(), jax.default_device(jax.devices("cpu")[0]):
        got = np.asarray(fn(jnp.asarray(x), jnp.asarray(dy), 3, 2))
    return bool(np.allclose(got, _reference(x, dy, 3, 2), rtol=1e-4, atol=1e-4))


def kernel_grad(x, dy, k: int, stride: int):
    """dL/dkernel (k, k, 1, C), float32, of a k x k depthwise conv (padding k // 2).

    x: the conv's float32 NHWC input; dy: the float32 gradient of its output.
    Requires ``available()``. The op has no partitioning rule: on a batch sharded
    over several devices XLA gathers ``x`` and ``dy`` to each of them first.
    """
    if x.dtype != jnp.float32 or dy.dtype != jnp.float32 or x.ndim != 4 or dy.ndim != 4:
        raise ValueError(f"kernel_grad takes float32 NHWC arrays, got {x.dtype}{x.shape} and {dy.dtype}{dy.shape}")
    channels = x.shape[3]
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((k * k, channels), jnp.float32), vmap_method="sequential")
    return call(x, dy, np.array([k, stride], np.int32)).reshape(k, k, 1, channels)
