"""The depthwise kernel gradient as one compiled CPU loop, called from XLA as a typed-FFI op.

Why: the kernel gradient of a k x k depthwise conv, dL/dk[i, j, c] = sum over
batch and space of x_pad[n, h*s + i, w*s + j, c] * dy[n, h, w, c], is k*k
reductions that share their inputs. XLA:CPU cannot fuse them: it copies each tap's
window and reduces it separately, k*k passes over the data in thousands of small
ops (a sizeable share of a CPU train step: experiments/speed/README.md). One loop
that reads ``x`` and ``dy`` once and keeps the k*k running sums does the same work
several times faster.

How: numba compiles the loop (no C compiler needed), and a numba ``cfunc``
implements XLA's typed foreign-function handler ABI (``xla/ffi/api/c_api.h`` in
jaxlib, API 0.x): it answers XLA's metadata query, then reads the buffers from the
call frame. XLA runs the op like any other, on whichever thread its scheduler
picks, alongside the rest of the backward pass.

Reading another program's memory layout, it fails loudly, never silently:

- ``available()`` is False (with a warning) on a jaxlib outside the releases whose
  header the offsets were checked against (``_ffi_numba.TESTED_JAXLIB``), where
  numba is missing, or off 64-bit little-endian CPUs; layers.py then keeps the
  pure-XLA kernel gradient.
- ``available_for(k, stride)`` checks a known answer once per kernel size and
  stride, the first time a model uses that pair; a pair that fails keeps XLA's
  kernel gradient, with a warning.
- A call frame the handler does not expect fills the output with NaN (or returns
  an XLA error when there is no output to fill) and is counted; ``check_frames()``
  warns about the count, cheaply enough to call at every log step.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

TARGET = "amobilenet_depthwise_kernel_grad"
_FFI_MODULE = "amobilenet_jax.kernels._ffi_numba"

# (k, stride) -> whether the known-answer check passed.
_CHECKED: dict[tuple[int, int], bool] = {}
# Bad frames from registration and the self-checks: their own warnings named them, and
# they touched no training step, so check_frames() does not count them again.
_reported_bad_frames = 0
_frames_warned = False


def jaxlib_tested(version: str) -> bool:
    """Whether jaxlib ``version`` (e.g. "0.10.2") lies in the range whose FFI header the offsets were checked on."""
    from amobilenet_jax.kernels import _ffi_numba

    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if match is None:
        return False
    low, high = _ffi_numba.TESTED_JAXLIB
    return low <= tuple(int(part) for part in match.groups()) <= high


@functools.cache
def _register() -> None:
    from amobilenet_jax.kernels import _ffi_numba

    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(_ffi_numba.handler.address), platform="cpu")


@functools.cache
def available() -> bool:
    """Whether the compiled kernel can run here and is registered with XLA's CPU backend (done on first call).

    Each (kernel size, stride) is further checked by ``available_for``.
    """
    from amobilenet_jax.kernels import _ffi_numba

    if not _ffi_numba.SUPPORTED:
        return False
    if not jaxlib_tested(jaxlib.__version__):
        low, high = (".".join(map(str, v)) for v in _ffi_numba.TESTED_JAXLIB)
        warnings.warn(
            f"compiled depthwise kernel gradient not used: it reads XLA's FFI call frame at offsets checked on "
            f"jaxlib {low} to {high}, and this is jaxlib {jaxlib.__version__} (to extend the range, run "
            "tests/test_kernels.py against it); using XLA's",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    before = bad_frame_count()
    try:
        _register()
    except Exception as e:  # e.g. a future XLA that no longer accepts this FFI API version
        warnings.warn(f"compiled depthwise kernel gradient not registered ({e}); using XLA's", stacklevel=2)
        return False
    if bad_frame_count() != before:  # XLA's metadata query was not what the handler expects
        _note_reported_frames(bad_frame_count() - before)
        warnings.warn(
            f"compiled depthwise kernel gradient not used: {_last_reason()} at registration; using XLA's",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def available_for(k: int, stride: int) -> bool:
    """Whether the compiled kernel gradient is available and gives the known answer for k x k, ``stride``.

    Checked once per pair, on tiny arrays (milliseconds), on first use: layers.py
    asks while a model is traced, so a model checks exactly the pairs it uses. A
    pair that fails warns and keeps XLA's kernel gradient.
    """
    key = (int(k), int(stride))
    if key not in _CHECKED:
        ok = available()
        if ok:
            before, why = bad_frame_count(), ""
            try:
                ok = _self_check(kernel_grad, *key)
            except Exception as e:  # the handler's XLA error, when it found no output to fill
                ok, why = False, f" ({e})"
            refused = bad_frame_count() - before
            _note_reported_frames(refused)
            if not ok:
                why = f" ({_last_reason()})" if refused else why
                warnings.warn(
                    f"compiled depthwise kernel gradient failed its known-answer check for {k}x{k}, "
                    f"stride {stride}{why}; using XLA's for that layer shape",
                    RuntimeWarning,
                    stacklevel=2,
                )
        _CHECKED[key] = ok
    return _CHECKED[key]


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


def _self_check(fn, k: int, stride: int) -> bool:
    """Whether ``fn(x, dy, k, stride)`` matches the NumPy reference on a small case, on CPU.

    The input is non-square and a few pixels larger than the kernel, so the padded
    borders, the stride and every tap are exercised. The result must also leave the
    bad-frame counter where it was.
    """
    rng = np.random.default_rng(k * 100 + stride)
    height, width = k + 2, k + 3
    x = rng.standard_normal((2, height, width, 8), np.float32)
    out_h, out_w = ((size + 2 * (k // 2) - k) // stride + 1 for size in (height, width))
    dy = rng.standard_normal((2, out_h, out_w, 8), np.float32)
    before = bad_frame_count()
    # available_for() may first run while a model is being traced: compute eagerly.
    p = k // 2
    with jax.ensure_compile_time_eval(), jax.default_device(jax.devices("cpu")[0]):
        got = np.asarray(fn(jnp.asarray(x), jnp.asarray(dy), k, stride))
        # The same kernel on an input that already carries its padding (layers' form).
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        got_padded = np.asarray(fn(jnp.asarray(xp), jnp.asarray(dy), k, stride, padded=True))
    if bad_frame_count() != before:
        return False
    want = _reference(x, dy, k, stride)
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-4) and np.allclose(got_padded, want, rtol=1e-4, atol=1e-4))


def bad_frame_count() -> int:
    """How many call frames the compiled handler has refused in this process (its output is NaN then)."""
    ffi = sys.modules.get(_FFI_MODULE)  # not imported: nothing has run, and nothing to compile now
    return 0 if ffi is None else int(ffi.BAD_FRAMES[0])


def _last_reason() -> str:
    ffi = sys.modules[_FFI_MODULE]
    return ffi.REASONS.get(int(ffi.BAD_FRAMES[1]), "unknown reason")


def _note_reported_frames(count: int) -> None:
    """Bad frames a warning other than check_frames() has already named."""
    global _reported_bad_frames
    _reported_bad_frames += count


def check_frames() -> int:
    """Bad frames outside the self-checks so far; warns the first time there are any.

    Reads a host-side counter: no device sync, about a microsecond, so a training
    loop can call it at every log step. A refused frame left its kernel gradient
    NaN, so the loss turns NaN one step later.
    """
    global _frames_warned
    count = bad_frame_count() - _reported_bad_frames
    if count > 0 and not _frames_warned:
        _frames_warned = True
        warnings.warn(
            f"the compiled depthwise kernel gradient refused {count} XLA call frame(s) ({_last_reason()}): it wrote "
            "NaN over their output (or raised an XLA error); set model.depthwise_impl='shift' to use XLA's",
            RuntimeWarning,
            stacklevel=2,
        )
    return count


def kernel_grad(x, dy, k: int, stride: int, padded: bool = False):
    """dL/dkernel (k, k, 1, C), float32, of a k x k depthwise conv (padding k // 2).

    x: the conv's float32 NHWC input, or with ``padded`` that input already padded by
    k // 2 on each side (``layers._pad_same``); dy: the float32 gradient of its output.
    Requires ``available()``. The op has no partitioning rule: on a batch sharded
    over several devices XLA gathers ``x`` and ``dy`` to each of them first.
    """
    if x.dtype != jnp.float32 or dy.dtype != jnp.float32 or x.ndim != 4 or dy.ndim != 4:
        raise ValueError(f"kernel_grad takes float32 NHWC arrays, got {x.dtype}{x.shape} and {dy.dtype}{dy.shape}")
    channels = x.shape[3]
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((k * k, channels), jnp.float32), vmap_method="sequential")
    params = np.array([k, stride, 0] if padded else [k, stride], np.int32)
    return call(x, dy, params).reshape(k, k, 1, channels)
