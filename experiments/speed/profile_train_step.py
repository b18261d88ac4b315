"""Where a training step's time goes: XLA op times from a profiler trace, by layer part.

    python experiments/speed/profile_train_step.py [--batch 64] [--image_size 48] [--model amobilenet]

Traces a few steps of the real train step (as ``bench --mode train`` builds it, with
``amobilenet_jax.runtime`` applied), then sums each XLA op's time per step by the
part of the model its ``op_name`` names (dense conv, depthwise conv, BN, CBAM, other)
and by pass (forward, backward). Times are summed over threads, so on 2 cores the
total exceeds the wall-clock step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

from amobilenet_jax import runtime

PARTS = (("/dw/", "depthwise conv"), ("/conv/", "dense conv (matmul)"), ("/bn/", "BatchNorm + act"), ("cbam", "CBAM"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="amobilenet")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--stem_stride", type=int, default=0, help="0: the model's own (2)")
    args = parser.parse_args()
    runtime.configure()

    import jax

    from amobilenet_jax import steps
    from amobilenet_jax.config import base_config
    from amobilenet_jax.models import build_model

    c = base_config()
    c.model.name = args.model
    c.data.image_size = args.image_size
    if args.stem_stride:
        c.model.stem_stride = args.stem_stride
    c.train.batch_size = args.batch
    model = build_model(c.model, 8)
    state = steps.create_train_state(c, model, args.image_size, 8)
    key = jax.random.PRNGKey(0)
    batch = {
        "image": jax.random.normal(key, (args.batch, args.image_size, args.image_size, 3)),
        "label": jax.random.randint(key, (args.batch,), 0, 8),
    }
    compiled = jax.jit(steps.make_train_step(c), donate_argnums=0).lower(state, batch).compile()
    op_names = {}  # HLO instruction -> the JAX op_name it came from
    for line in compiled.as_text().splitlines():
        m = re.match(r"\s+(?:ROOT )?%([\w.\-]+) = .*op_name=\"([^\"]*)\"", line)
        if m:
            op_names[m.group(1)] = m.group(2)
    for _ in range(3):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(args.steps):
                state, _ = compiled(state, batch)
            jax.block_until_ready(state)
        (path,) = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    totals = collections.Counter()
    counts = collections.Counter()
    for e in events:
        name = op_names.get(e.get("name", ""))
        if e.get("ph") != "X" or name is None:
            continue
        part = next((label for key, label in PARTS if key in name), "other")
        key = (part, "backward" if "transpose(" in name else "forward")
        totals[key] += e["dur"] / 1000 / args.steps
        counts[key] += 1 / args.steps
    size = f"{args.image_size}x{args.image_size}"
    print(f"{args.model}, batch {args.batch}, {size}: XLA op time per step, summed over threads")
    print("| part | pass | ms | ops |\n|---|---|---|---|")
    for (part, direction), ms in totals.most_common():
        print(f"| {part} | {direction} | {ms:.1f} | {counts[(part, direction)]:.0f} |")
    print(f"| total | | {sum(totals.values()):.1f} | {sum(counts.values()):.0f} |")


if __name__ == "__main__":
    main()
