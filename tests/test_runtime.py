"""runtime.configure: XLA:CPU's per-run temporary buffer is reused, not faulted in afresh."""

import json
import platform
import subprocess
import sys
import warnings

import jax
import pytest

from tests.conftest import REPO

# The gradient of a small MLP on 8192 rows, whose activations and their gradients
# are XLA temporaries (100 MB), run repeatedly after a warm-up; prints the applied
# settings and the minor page faults per run.
PROGRAM = """
import json, resource, sys
import jax, jax.numpy as jnp
applied = {}
if sys.argv[1] == "tuned":
    from amobilenet_jax import runtime as cpu_runtime
    applied = cpu_runtime.configure()
def mlp(x, w):
    h = jax.nn.relu(jax.nn.relu(x @ w) @ w)
    return jnp.sum(h @ w)
grad = jax.jit(jax.grad(mlp, argnums=1))
x, w = jnp.ones((8192, 512)), jnp.full((512, 512), 0.01)
def run():
    return float(grad(x, w).sum())
for _ in range(5):  # compiles both programs; the heap settles into its steady layout
    run()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    value = run()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps({"applied": applied, "faults_per_run": faults, "value": value,
                  "async": jax.config.read("jax_cpu_enable_async_dispatch")}))
"""


def _run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROGRAM, mode], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap settings are glibc's")
def test_configure_stops_faulting_in_the_temporary_buffer_each_run():
    tuned = _run("tuned")
    assert tuned["applied"] == {"async_dispatch_off": True, "heap_reuse": True}
    assert tuned["async"] is False
    default = _run("default")
    # 100 MB is 24,576 pages of 4 kB: without the settings each run faults a fresh buffer in
    # (about 29,000 faults here), with them almost none (0.2 alone; once 4,956 in a full suite
    # run beside a headless browser, cause not found). A quarter of the default's faults
    # separates the two.
    assert default["faults_per_run"] > 24_576 and tuned["faults_per_run"] < default["faults_per_run"] / 4, (
        tuned,
        default,
    )
    assert tuned["value"] == default["value"]


def test_configure_after_backend_start_reports_async_dispatch_unchanged():
    program = (
        "import json, jax; jax.devices(); from amobilenet_jax import runtime as cpu_runtime; "
        "print(json.dumps(cpu_runtime.configure()))"
    )
    proc = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["async_dispatch_off"] is False


@pytest.fixture
def no_process_changes(monkeypatch):
    """configure() in this process, without touching its heap or its JAX settings."""
    from amobilenet_jax import runtime as cpu_runtime

    monkeypatch.setattr(cpu_runtime, "_glibc", lambda: None)
    cpu_runtime._backends_are_initialized.cache_clear()
    yield cpu_runtime
    cpu_runtime._backends_are_initialized.cache_clear()


def test_configure_without_jaxs_private_backend_query_warns_once_and_leaves_async_dispatch(
    monkeypatch, no_process_changes
):
    from jax._src import xla_bridge

    cpu_runtime = no_process_changes
    monkeypatch.delattr(xla_bridge, "backends_are_initialized")  # as in a jax that renamed it
    updates = []
    monkeypatch.setattr(jax.config, "update", lambda *args: updates.append(args))
    with pytest.warns(RuntimeWarning, match="no jax._src.xla_bridge.backends_are_initialized"):
        assert cpu_runtime.configure() == {"async_dispatch_off": False, "heap_reuse": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert cpu_runtime.configure() == {"async_dispatch_off": False, "heap_reuse": False}
    assert updates == []


def test_configure_without_the_async_dispatch_option_warns(monkeypatch, no_process_changes):
    from jax._src import xla_bridge

    cpu_runtime = no_process_changes
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)

    def update(name, value):
        raise AttributeError(f"Unrecognized config option: {name}")

    monkeypatch.setattr(jax.config, "update", update)
    with pytest.warns(RuntimeWarning, match="async dispatch stays on"):
        assert cpu_runtime.configure() == {"async_dispatch_off": False, "heap_reuse": False}
