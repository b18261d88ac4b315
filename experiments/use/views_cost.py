"""Where the time of the shipped model's 12 test-time views goes: building the views (a bilinear
gather per crop) against the model's forward passes, for one batch of faces, warm and jitted.

    python experiments/use/views_cost.py --out experiments/use/views_cost_cpu.json

Each figure is the median of ``--repeats`` calls of one jitted function on the same batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from amobilenet_jax import inference, runtime
from amobilenet_jax.data import augment


def timed(f, x, repeats: int) -> float:
    jax.block_until_ready(f(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runtime.configure()
    model = inference.load_model()
    config = model.config
    shape = model.native_shape
    faces = jnp.asarray(np.random.default_rng(0).integers(0, 256, (args.batch, *shape), np.uint8))

    def apply(x, return_attention):
        return model.module.apply(model.variables, x, train=False)[0], None

    functions = {
        "views_only_12": jax.jit(lambda x: augment.view_batches(x, config, crops=True)),
        "views_only_2": jax.jit(lambda x: augment.view_batches(x, config, crops=False)),
        "vote_2_views": jax.jit(lambda x: augment.vote(apply, x, config, crops=False)[0]),
        "vote_12_views": jax.jit(lambda x: augment.vote(apply, x, config, crops=True)[0]),
    }
    seconds = {name: timed(f, faces, args.repeats) for name, f in functions.items()}
    result = {
        "command": " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "machine": f"{runtime.machine()}; jax {jax.__version__}",
        "model": model.source.split("amobilenet_jax/")[-1],
        "batch": args.batch,
        "views": augment.num_views(config),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "twelve_over_two": round(seconds["vote_12_views"] / seconds["vote_2_views"], 2),
        "building_views_share_of_12": round(seconds["views_only_12"] / seconds["vote_12_views"], 4),
    }
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
