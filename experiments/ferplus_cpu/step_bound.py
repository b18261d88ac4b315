"""How fast can the recipe's train step get against the PyTorch peer? Its matrix products set a floor.

    python experiments/ferplus_cpu/step_bound.py --peer ../shared/bench/torch_peer.py [--repeats 3] [--out FILE]

For A-MobileNet at the recipe's size (48x48, stem stride 1, batch 64) this times, in one process
and interleaved ``--repeats`` times:

- the peer's train step (``torch_peer.py --stem-stride 1 --channels-last``, a subprocess) and
  JAX's (``python -m amobilenet_jax.bench --mode train``, a subprocess);
- every matrix product of JAX's train step, found in its jaxpr (the 1x1 convs, the im2col stem
  and the classifier, forward and both gradients), each timed on its own in JAX and, as the same
  product, in PyTorch (2 threads), and summed with their counts.

The products are the same arithmetic in both frameworks, done by each framework's own GEMM
library, so their sum is about what any step of this network pays before its memory-bound
parts. ``floor_share_of_target`` says how much of the step that would be 1.5x the peer they
take by themselves, and ``rest_allowed_for_1.5x_ms`` what would be left for everything else
(BatchNorm, activations, the depthwise convs, CBAM, loss, Adam). The last line is JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time

from amobilenet_jax import runtime


def _dots(jaxpr, found):
    """(lhs shape, rhs shape, dimension numbers) of every dot_general, sub-jaxprs included."""
    import jax

    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
            key = (
                tuple(eqn.invars[0].aval.shape),
                tuple(eqn.invars[1].aval.shape),
                (tuple(lc), tuple(rc)),
                (tuple(lb), tuple(rb)),
            )
            found[key] += 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    _dots(sub.jaxpr, found)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    _dots(sub, found)
    return found


def _median_ms(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _time_product(lhs, rhs, lc, rc) -> tuple[float, float]:
    """One product timed alone: JAX's dot_general (jitted) and torch.tensordot, in ms."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    a = np.random.default_rng(0).standard_normal(lhs, np.float32)
    b = np.random.default_rng(1).standard_normal(rhs, np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    f = jax.jit(lambda x, y: jax.lax.dot_general(x, y, ((lc, rc), ((), ()))))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    jax_ms = _median_ms(lambda: f(ja, jb).block_until_ready())
    torch_ms = _median_ms(lambda: torch.tensordot(ta, tb, dims=(list(lc), list(rc))))
    return jax_ms, torch_ms


def products(batch: int, image_size: int, stem_stride: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from amobilenet_jax import steps
    from amobilenet_jax.config import base_config
    from amobilenet_jax.models import build_model

    torch.set_num_threads(2)
    c = base_config()
    c.model.name, c.model.stem_stride, c.data.image_size, c.train.batch_size = (
        "amobilenet",
        stem_stride,
        image_size,
        batch,
    )
    model = build_model(c.model, 8)
    state = steps.create_train_state(c, model, image_size, 8)
    batch_data = {"image": jnp.zeros((batch, image_size, image_size, 3)), "label": jnp.zeros((batch,), jnp.int32)}
    jaxpr = jax.make_jaxpr(steps.make_train_step(c))(state, batch_data)
    rows = []
    for (lhs, rhs, (lc, rc), (lb, rb)), count in sorted(_dots(jaxpr.jaxpr, collections.Counter()).items()):
        if lb or rb:
            continue  # none in this model; a batched product is not a plain GEMM
        if (lc, rc) == ((1,), (1,)) and rhs[0] == 9 * 3:
            continue  # the stem's input gradient: the images take none, and XLA drops it from the program
        jax_ms, torch_ms = _time_product(lhs, rhs, lc, rc)
        flops = 2 * np.prod(lhs) * np.prod([rhs[i] for i in range(len(rhs)) if i not in rc])
        rows.append({"lhs": lhs, "rhs": rhs, "contract": [lc, rc], "count": count, "gflop": round(flops / 1e9, 4),
                     "jax_ms": round(jax_ms, 3), "torch_ms": round(torch_ms, 3)})  # fmt: skip
    return rows


def _last_json(command: list[str]) -> dict:
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", required=True, help="the PyTorch peer script (torch_peer.py)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--stem_stride", type=int, default=1)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    runtime.configure()
    timing = ["--mode", "train", "--batch", str(args.batch), "--steps", "10", "--repeats", "5"]
    peer_cmd = [sys.executable, args.peer, *timing, "--image-size", str(args.image_size),
                "--stem-stride", str(args.stem_stride), "--channels-last"]  # fmt: skip
    jax_cmd = [sys.executable, "-m", "amobilenet_jax.bench", *timing, "--image_size", str(args.image_size),
               "--stem_stride", str(args.stem_stride)]  # fmt: skip
    pairs, gemms = [], []
    for _ in range(args.repeats):
        peer, ours = _last_json(peer_cmd), _last_json(jax_cmd)
        pairs.append((peer["ms_per_step"], ours["ms_per_step"]))
        gemms.append(products(args.batch, args.image_size, args.stem_stride))
        print(f"peer {peer['ms_per_step']:.1f} ms, jax {ours['ms_per_step']:.1f} ms per step", flush=True)
    peer_ms = statistics.median(p for p, _ in pairs)
    jax_ms = statistics.median(j for _, j in pairs)
    rows = gemms[-1]
    for row in rows:  # the median over repeats of each product's time
        i = rows.index(row)
        row["jax_ms"] = statistics.median(g[i]["jax_ms"] for g in gemms)
        row["torch_ms"] = statistics.median(g[i]["torch_ms"] for g in gemms)
    floor_jax = sum(r["jax_ms"] * r["count"] for r in rows)
    floor_torch = sum(r["torch_ms"] * r["count"] for r in rows)
    gflop = sum(r["gflop"] * r["count"] for r in rows)
    target = peer_ms / 1.5
    result = {
        "what": "A-MobileNet train step, its matrix products timed alone in each framework",
        "batch": args.batch, "image_size": args.image_size, "stem_stride": args.stem_stride,
        "pairs_ms": pairs, "peer_ms": peer_ms, "jax_ms": jax_ms, "ratio": round(peer_ms / jax_ms, 3),
        "products": rows, "products_gflop": round(gflop, 2),
        "products_jax_ms": round(floor_jax, 1), "products_torch_ms": round(floor_torch, 1),
        "products_jax_gflops": round(gflop / floor_jax * 1000, 1),
        "target_ms_for_1.5x": round(target, 1), "floor_share_of_target": round(floor_jax / target, 3),
        "rest_of_jax_step_ms": round(jax_ms - floor_jax, 1), "rest_allowed_for_1.5x_ms": round(target - floor_jax, 1),
        "cpu": os.cpu_count(),
    }  # fmt: skip
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
