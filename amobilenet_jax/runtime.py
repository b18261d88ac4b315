"""Process-wide runtime settings: the compilation cache, and what makes XLA:CPU faster.

``enable_compilation_cache`` reuses compiled programs across runs. ``configure``:

XLA:CPU allocates each run's temporary buffer (all activations and gradients) with
``malloc``; glibc serves a request that large with ``mmap`` and gives it back with
``munmap``, so every step faults in tens of thousands of new pages for the kernel to
zero-fill (experiments/speed/README.md has the profile). Two settings stop it:

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
import os
import platform
import warnings

import jax


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), for the records of measurements."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """``"<CPU>, <N> cores, <OS>"``: the machine a measurement ran on."""
    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()}"


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
            f"runtime: this jax {jax.__version__} has no jax._src.xla_bridge.backends_are_initialized ({e}), "
            "so async dispatch stays on (slower CPU training, same results); update amobilenet_jax/runtime.py",
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
            warnings.warn(f"runtime: async dispatch stays on ({e})", RuntimeWarning, stacklevel=2)
    libc = _glibc()
    if libc is not None:
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
        applied["heap_reuse"] = bool(ok)
    return applied


def enable_compilation_cache() -> None:
    """Reuses compiled programs across runs (resumes, sweep points of equal shapes, predict).

    ``AMOBILENET_JAX_CACHE`` names the directory; set it empty to switch the cache off. Every
    program is kept, however quick to compile, not only those over JAX's default of 1 s: a warm
    ``predict`` starts sooner (experiments/use/README.md).
    """
    import os

    import jax

    path = os.environ.get("AMOBILENET_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "amobilenet_jax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def initialize_distributed(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None, from_environment: bool
) -> None:
    """Joins the processes of a multi-host run before any device is touched: explicitly (all
    three values), or from the cluster's environment (SLURM, Open MPI, Kubernetes, Cloud TPU)."""
    import jax

    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise ValueError("--coordinator_address, --num_processes and --process_id go together")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif from_environment:
        jax.distributed.initialize()
