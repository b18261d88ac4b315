"""cpu_runtime.configure: XLA:CPU's per-run temporary buffer is reused, not faulted in afresh."""

import json
import platform
import subprocess
import sys

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
    from amobilenet_jax import cpu_runtime
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
    # 100 MB is 24,576 pages of 4 kB: a fresh buffer per run would fault them all in.
    assert tuned["faults_per_run"] < 1000, tuned
    assert tuned["value"] == _run("default")["value"]


def test_configure_after_backend_start_reports_async_dispatch_unchanged():
    program = (
        "import json, jax; jax.devices(); from amobilenet_jax import cpu_runtime; "
        "print(json.dumps(cpu_runtime.configure()))"
    )
    proc = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["async_dispatch_off"] is False
