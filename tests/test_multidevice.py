"""Data parallelism: the same two train steps on 1 and on 4 (fake CPU) devices agree."""

import json
import os
import subprocess
import sys

from tests.conftest import CACHE, REPO

SCRIPT = r"""
import json, sys
import jax
import numpy as np
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
from amobilenet_jax import train
from amobilenet_jax.config import load_config_file

config = load_config_file(sys.argv[2])
# Adam's first steps move every parameter by +-lr whatever its gradient's size, so a
# parameter whose true gradient is zero (a BN shift that the next BN removes) moves by
# the sign of rounding noise. A large eps makes the update a smooth function of the
# gradient, so equal gradients give equal parameters and the comparison is meaningful.
config.optimizer.eps = 1e-3
assert len(jax.devices()) == 4, jax.devices()
results = {}
for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
    exp = train.Experiment(config, devices=devices)
    state = exp.init_state()
    for step in range(2):
        state, metrics = exp.train_step(state, exp.train_split.batch(exp.order.indices(step)))
    if name == "four":  # the batch really is split across the four devices
        batch = exp.train_split.batch(exp.order.indices(0))
        assert len(batch["image"].sharding.device_set) == 4
        assert batch["image"].addressable_shards[0].data.shape[0] == config.train.batch_size // 4
    host = jax.device_get(state)
    results[name] = {
        "leaves": [
            np.asarray(x, np.float64).ravel().tolist()
            for x in jax.tree.leaves((host.params, host.batch_stats, host.centers))
        ],
        "loss": float(metrics.compute()["loss"]),
        "step": int(host.step),
    }
print("RESULT " + json.dumps(results))
"""


def test_four_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    config = os.path.join(REPO, "configs", "quickstart.py") + ":tiny"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, CACHE, config], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    one, four = results["one"], results["four"]
    assert one["step"] == four["step"] == 2
    assert abs(one["loss"] - four["loss"]) < 1e-4
    import numpy as np

    for a, b in zip(one["leaves"], four["leaves"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
