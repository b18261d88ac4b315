"""The shipped model's 12 test-time views at each batch size: compile time and run time of the
three ways a program can send them through the model.

- ``per_view``: one model call per view, each written out in the program (``vote`` until
  2026-12-06: twelve copies of the model to compile);
- ``together``: every view but the attention one in a single call of B x 11 images (``jax.vmap``);
- ``in_sequence``: one view a call inside a loop (``jax.lax.map``).

``data.augment.vote`` takes ``together`` up to ``ONE_CALL_IMAGES`` images a call and
``in_sequence`` above. Each variant's program is compiled with the persistent cache off; its run
time is the median of ``--repeats`` rounds (each round runs it for ``--round_s`` seconds), the
variants interleaved. ``max_abs_logit_diff`` is against ``per_view``.

    python experiments/views/bench.py --out experiments/views/views_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from amobilenet_jax import inference, runtime  # noqa: E402
from amobilenet_jax.data.augment import view_batches  # noqa: E402


def variants(model):
    config, module = model.config, model.module

    def apply(variables, x, attention):
        return module.apply(variables, x, train=False, return_attention=attention)

    def ordered_views(images):
        return [v for x in view_batches(images, config) for v in (x, x[:, :, ::-1, :])]

    def per_view(variables, images):
        views = ordered_views(images)
        logits, aux = apply(variables, views[0], True)
        for x in views[1:]:
            logits = logits + apply(variables, x, False)[0]
        return logits, aux["attention"]

    def stacked(map_fn):
        def run(variables, images):
            views = ordered_views(images)
            logits, aux = apply(variables, views[0], True)
            out = map_fn(lambda x: apply(variables, x, False)[0], jnp.stack(views[1:]))
            for i in range(out.shape[0]):
                logits = logits + out[i]
            return logits, aux["attention"]

        return run

    return {
        "per_view": per_view,
        "together": stacked(lambda f, xs: jax.vmap(f)(xs)),
        "in_sequence": stacked(jax.lax.map),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,2,4,8,16,64", help="comma-separated batch sizes (faces)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--round_s", type=float, default=0.6)
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args()
    runtime.configure()
    model = inference.load_model()
    rng = np.random.default_rng(0)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        images = jnp.asarray(rng.integers(0, 256, (batch, *model.native_shape), dtype=np.uint8))
        compiled = {}
        for name, fn in variants(model).items():
            start = time.perf_counter()
            program = jax.jit(fn).lower(model.variables, images).compile()
            compile_s = time.perf_counter() - start
            logits = np.asarray(jax.block_until_ready(program(model.variables, images))[0])
            compiled[name] = (program, compile_s, logits, [])
        for _ in range(args.repeats):
            for program, _, _, times in compiled.values():
                start, n = time.perf_counter(), 0
                while time.perf_counter() - start < args.round_s:
                    jax.block_until_ready(program(model.variables, images))
                    n += 1
                times.append((time.perf_counter() - start) / n)
        reference = compiled["per_view"][2]
        for name, (_, compile_s, logits, times) in compiled.items():
            row = {
                "batch": batch,
                "variant": name,
                "compile_s": round(compile_s, 2),
                "run_ms": round(float(np.median(times)) * 1000, 2),
                "ms_per_face": round(float(np.median(times)) * 1000 / batch, 2),
                "max_abs_logit_diff": float(np.abs(logits - reference).max()),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        record = {
            "machine": runtime.machine(),
            "date": datetime.date.today().isoformat(),
            "jax": jax.__version__,
            "command": "python experiments/views/bench.py " + " ".join(sys.argv[1:]),
            "model": "the shipped FERPlus model (12 test-time views)",
            "rows": rows,
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
