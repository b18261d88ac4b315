"""Speed-up of N vmapped seeds over N sequential runs (training steps only, compile excluded).

    python experiments/vmap_sweep/vmap_speedup.py --points 2 4 --steps 100 \\
        --out experiments/vmap_sweep/vmap_speedup_cpu.json

Both paths run the quickstart config's train step on the same device-resident data, with
``amobilenet_jax.runtime`` applied as ``main`` applies it;
the first step of each (the compile) is excluded, the remaining steps are timed with a
host sync at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

# Every seed's sequential step is the same program: the persistent cache compiles it once.
jax.config.update("jax_compilation_cache_dir", os.environ.get("AMOBILENET_JAX_CACHE", "/tmp/amobilenet_jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from amobilenet_jax import runtime  # noqa: E402

CPU_TUNING = runtime.configure()  # as main does, before JAX starts its backend

from amobilenet_jax import train, vectorized  # noqa: E402
from amobilenet_jax.config import load_config_file  # noqa: E402
from amobilenet_jax.data.pipeline import TrainOrder  # noqa: E402


def _timed_steps(step_fn, state, batches) -> tuple[float, int]:
    """Runs every batch; returns the seconds spent on all but the first (compile) step."""
    state, _ = step_fn(state, batches[0])
    jax.block_until_ready(state)
    start = time.perf_counter()
    for batch in batches[1:]:
        state, _ = step_fn(state, batch)
    jax.block_until_ready(state)
    return time.perf_counter() - start, len(batches) - 1


def measure(num_points: int, steps: int) -> dict:
    configs = []
    for seed in range(num_points):
        c = load_config_file(os.path.join(REPO, "configs", "quickstart.py"))
        c.seed, c.train.num_steps = seed, steps
        configs.append(c)
    exp = train.Experiment(configs[0])
    labels = exp.dataset.split("train").labels
    orders = [TrainOrder(c.seed, labels, c.train.batch_size, c.data.balance, c.data.balance_power) for c in configs]

    sequential = 0.0
    for config, order in zip(configs, orders, strict=True):
        step_fn = jax.jit(steps.make_train_step(config), donate_argnums=0, out_shardings=exp.replicated)
        batches = [exp.train_split.batch(order.indices(s)) for s in range(steps)]
        state = jax.device_put(vectorized.create_point_state(config, exp), exp.replicated)  # as init_state
        seconds, timed = _timed_steps(step_fn, state, batches)
        sequential += seconds

    stacked = jax.device_put(
        vectorized.stack_states([vectorized.create_point_state(c, exp) for c in configs]), exp.replicated
    )
    step_fn = jax.jit(jax.vmap(steps.make_train_step(configs[0])), donate_argnums=0, out_shardings=exp.replicated)
    batches = [
        vectorized._gather_points(exp.train_split.arrays, jnp.asarray(np.stack([o.indices(s) for o in orders])))
        for s in range(steps)
    ]
    vmapped, timed = _timed_steps(step_fn, stacked, batches)
    return {
        "points": num_points,
        "timed_steps_per_point": timed,
        "batch_size": configs[0].train.batch_size,
        "sequential_s": sequential,
        "vmapped_s": vmapped,
        "speedup": sequential / vmapped,
        "vmapped_images_per_s": timed * num_points * configs[0].train.batch_size / vmapped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "vmap_sweep", "vmap_speedup_cpu.json"))
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(command, flush=True)
    load_before = os.getloadavg()
    rows = []
    for n in args.points:
        rows.append(measure(n, args.steps))
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "command": command,
        "config": "configs/quickstart.py (width 0.25, 48 px, batch 64), train.num_steps=--steps",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "cpu_tuning": CPU_TUNING,
        },
        "results": rows,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
