"""Data parallelism on several devices and hosts: 2 processes on localhost (jax.distributed,
CPU collectives), each owning 2 fake CPU devices, so the batch is split over a mesh of 4
devices on 2 hosts. Both pipelines are trained for two steps: the device pipeline (every host
holds the split and gathers the global batch) and Grain (each host builds only its own rows,
assembled with ``make_array_from_process_local_data``). Both processes must end with the same
parameters, equal to a run on one device (in the test's own process). One multi-process chain
covers what a single process with 4 devices would: the same mesh, sharding and collectives.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from tests.conftest import CACHE, REPO, micro


def two_steps(config_spec: str) -> dict:
    """Two train steps of each pipeline on every device of this process's mesh, as JSON-able results."""
    import jax
    import numpy as np

    from amobilenet_jax import train
    from amobilenet_jax.config import load_config_file

    results = {}
    for pipeline in ("device", "grain"):
        # The micro body: what is checked is the mesh, the sharding and the collectives, not the
        # body; each of the four multi-device train steps compiles in less.
        config = micro(load_config_file(config_spec))
        # Adam's first steps move every parameter by +-lr whatever its gradient's size, so a
        # parameter whose true gradient is zero (a BN shift that the next BN removes) moves by
        # the sign of rounding noise. A large eps makes the update a smooth function of the
        # gradient, so equal gradients give equal parameters and the comparison is meaningful.
        config.optimizer.eps = 1e-3
        config.data.pipeline = pipeline
        config.data.grain_workers = 0
        exp = train.Experiment(config)
        state = exp.init_state()
        steps = 0
        for step, batch in exp.train_batches(0):
            if step == 2:
                break
            assert batch["image"].shape[0] == config.train.batch_size  # the global batch
            state, metrics = exp.train_step(state, batch)
            steps += 1
        leaves = jax.tree.leaves((state.params, state.batch_stats, state.centers))
        results[pipeline] = {
            "leaves": [np.asarray(x.addressable_data(0), np.float64).ravel().tolist() for x in leaves],
            "loss": float(np.asarray(metrics.compute()["loss"])),
            "devices": len(exp.mesh.devices.ravel()),
            "batch_size": config.train.batch_size,
            "local_rows": sorted(s.index[0].start or 0 for s in batch["image"].addressable_shards),
            "steps": steps,
        }
    return results


SCRIPT = r"""
import json, sys
import jax
cache, config_spec, num_processes, process_id, port, out = sys.argv[1:7]
jax.distributed.initialize(f"localhost:{port}", num_processes=int(num_processes), process_id=int(process_id))
jax.config.update("jax_compilation_cache_dir", cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
assert jax.process_count() == int(num_processes)
from tests.test_multihost import two_steps
with open(out, "w") as f:
    json.dump(two_steps(config_spec), f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(tmp_path, num_processes: int, devices_per_process: int) -> list[dict]:
    env = dict(
        os.environ,
        XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices_per_process}",
        JAX_PLATFORMS="cpu",
    )
    config = os.path.join(REPO, "configs", "quickstart.py") + ":tiny"
    port = str(_free_port())
    # Output goes to files, not pipes: a process blocked on a full pipe never reaches
    # jax.distributed's shutdown barrier, and the other waits there for it.
    outs = [tmp_path / f"{num_processes}-{pid}.json" for pid in range(num_processes)]
    logs = [open(tmp_path / f"{num_processes}-{pid}.log", "w") for pid in range(num_processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, CACHE, config, str(num_processes), str(pid), port, str(outs[pid])],
            cwd=REPO,
            env=env,
            stdout=logs[pid],
            stderr=subprocess.STDOUT,
        )
        for pid in range(num_processes)
    ]
    try:
        for proc in procs:
            proc.wait(timeout=600)
    finally:
        for proc, log in zip(procs, logs):
            if proc.poll() is None:
                proc.kill()
            log.close()
    for pid, proc in enumerate(procs):
        log_text = (tmp_path / f"{num_processes}-{pid}.log").read_text()
        assert proc.returncode == 0, log_text[-3000:]
    return [json.loads(out.read_text()) for out in outs]


def test_two_processes_match_one_process(tmp_path):
    single = two_steps(os.path.join(REPO, "configs", "quickstart.py") + ":tiny")  # one device, here
    hosts = _run(tmp_path, 2, 2)
    for pipeline in ("device", "grain"):
        ref = single[pipeline]
        assert ref["devices"] == 1 and ref["steps"] == 2
        for pid, host in enumerate(hosts):
            run = host[pipeline]
            assert run["devices"] == 4 and run["steps"] == 2
            # host pid's two devices hold quarters 2*pid and 2*pid+1 of the global batch
            quarter = run["batch_size"] // 4
            assert run["local_rows"] == [2 * pid * quarter, (2 * pid + 1) * quarter]
            assert abs(run["loss"] - ref["loss"]) < 1e-4, (pipeline, pid)
            for a, b in zip(ref["leaves"], run["leaves"]):
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
        # the two hosts hold bit-identical replicated parameters
        assert hosts[0][pipeline]["leaves"] == hosts[1][pipeline]["leaves"]
