"""Process-wide settings that make training on XLA:CPU faster.

Found by profiling the batch-64, 48x48 training step on the 2-core benchmark machine
(experiments/benchmarks.md): XLA:CPU allocates each run's temporary buffer (all
activations and gradients: 152 MB there) with ``malloc``; glibc serves a request that
large with ``mmap`` and gives it back with ``munmap``, so every step faulted in about
39,000 new pages for the kernel to zero-fill, and took 148.6 ms. Two settings stop it
(7 faults, 109.1 ms per step):

- ``jax_cpu_enable_async_dispatch=False`` runs a single-device program on the
  calling thread. Its allocations come from glibc's main arena; the worker threads'
  arenas serve any request above 64 MB with ``mmap``, whatever the settings.
- ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``: the main
  arena serves large requests from its heap and keeps freed memory for the next step.

The price is that the heap does not shrink (the process keeps its peak footprint)
and Python no longer runs ahead of the CPU computation, which on a CPU shares the
same cores anyway. Programs that span several devices keep async dispatch.

``configure`` must run before JAX creates its CPU client (its first computation or
device query); the command-line tools call it first thing, and ``--nocpu_tuning``
leaves the process as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import warnings

import jax

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def _backends_are_initialized():
    """JAX's private ``xla_bridge.backends_are_initialized``, or None (warned once) where it is gone.

    JAX has no public way to ask whether its CPU client exists yet, and the setting
    below is silently ignored once it does.
    """
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized
    except (ImportError, AttributeError) as e:
        warnings.warn(
            f"cpu_runtime: this jax {jax.__version__} has no jax._src.xla_bridge.backends_are_initialized ({e}), "
            "so async dispatch stays on (slower CPU training, same results); update amobilenet_jax/cpu_runtime.py",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def configure() -> dict[str, bool]:
    """Applies the settings above; returns which took effect.

    ``async_dispatch_off`` is False when JAX's backends already exist (the setting is
    read once, when the CPU client is made), or when this jax no longer has the
    private function that tells (a warning says so); ``heap_reuse`` is False off glibc.
    """
    applied = {"async_dispatch_off": False, "heap_reuse": False}
    initialized = _backends_are_initialized()
    if initialized is not None and not initialized():
        try:
            jax.config.update("jax_cpu_enable_async_dispatch", False)
            applied["async_dispatch_off"] = True
        except AttributeError as e:  # a jax without the option
            warnings.warn(f"cpu_runtime: async dispatch stays on ({e})", RuntimeWarning, stacklevel=2)
    libc = _glibc()
    if libc is not None:
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
        applied["heap_reuse"] = bool(ok)
    return applied
