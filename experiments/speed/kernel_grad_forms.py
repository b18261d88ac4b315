"""Forms of the depthwise kernel gradient, timed alone over A-MobileNet's 13 depthwise layers.

    python experiments/speed/kernel_grad_forms.py [--batch 64] [--image_size 48] [--rounds 7]

dL/dk[i, j, c] = sum over batch and space of x_pad[n, h*s + i, w*s + j, c] * dy[n, h, w, c].
Each form computes it for every depthwise layer of full-width MobileNetV1 (shapes from
``mobilenet_v1.BLOCKS``) in one jitted program; the forms are timed in interleaved rounds
(10 calls each per round), so drift of a shared machine hits all alike. Prints a Markdown
table (min and median ms per call of the whole set of layers) and, last, a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from amobilenet_jax import runtime


def layer_shapes(batch: int, image_size: int):
    """(x shape, stride) of each depthwise conv: the stem halves the input, then BLOCKS."""
    from amobilenet_jax.models.mobilenet_v1 import BLOCKS

    size, channels, shapes = -(-image_size // 2), 32, []
    for out_channels, stride in BLOCKS:
        shapes.append(((batch, size, size, channels), stride))
        size, channels = -(-size // stride), out_channels
    return shapes


def forms():
    import jax
    import jax.numpy as jnp

    from amobilenet_jax.kernels import cpu_kernels, depthwise
    from amobilenet_jax.kernels.windows import pad_same
    from amobilenet_jax.kernels.windows import taps as window_taps

    def windows(x, dy, stride):
        taps = window_taps(pad_same(x, 3), 3, stride, dy.shape[1], dy.shape[2])
        return [view for _, view in taps]

    def whole_batch(x, dy, stride):  # nine reductions, no chunks
        return jnp.stack([jnp.sum(v * dy, axis=(0, 1, 2)) for v in windows(x, dy, stride)])

    def variadic(x, dy, stride):  # one reduction with nine outputs
        products = [v * dy for v in windows(x, dy, stride)]
        zeros = [jnp.float32(0)] * 9
        return jnp.stack(jax.lax.reduce(products, zeros, lambda a, b: [p + q for p, q in zip(a, b)], (0, 1, 2)))

    def stacked(x, dy, stride):  # the nine products stacked, one reduction
        return jnp.sum(jnp.stack([v * dy for v in windows(x, dy, stride)]), axis=(1, 2, 3))

    def batch_first(x, dy, stride):  # sum over the batch axis, then over space
        return jnp.stack([jnp.sum(jnp.sum(v * dy, axis=0), axis=(0, 1)) for v in windows(x, dy, stride)])

    def grouped_conv(x, dy, stride):  # XLA's own gradient of its grouped convolution
        zero = jnp.zeros((3, 3, 1, x.shape[-1]))
        return jax.vjp(lambda k: depthwise.depthwise_conv_xla(x, k, stride), zero)[1](dy)[0]

    result = {
        "chunked (shift)": lambda x, dy, stride: depthwise._kernel_grad(x, dy, 3, stride),
        "whole batch": whole_batch,
        "variadic reduce": variadic,
        "stacked products": stacked,
        "batch axis first": batch_first,
        "grouped conv (xla)": grouped_conv,
    }
    if cpu_kernels.available():
        result["compiled loop (shift_ffi)"] = lambda x, dy, stride: cpu_kernels.kernel_grad(x, dy, 3, stride)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    runtime.configure()

    import jax
    import numpy as np

    shapes = layer_shapes(args.batch, args.image_size)
    key = jax.random.PRNGKey(0)
    inputs = []
    for shape, stride in shapes:
        out = -(-shape[1] // stride)
        kx, kg, key = jax.random.split(key, 3)
        inputs.append((jax.random.normal(kx, shape), jax.random.normal(kg, (shape[0], out, out, shape[3]))))
    strides = [stride for _, stride in shapes]
    programs, reference = {}, None
    for name, form in forms().items():
        fn = jax.jit(lambda xs, form=form: [form(x, dy, s).reshape(9, -1) for (x, dy), s in zip(xs, strides)])
        got = [np.asarray(g) for g in fn(inputs)]
        reference = reference or got
        err = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(got, reference))
        assert err < 1e-4, (name, err)  # every form computes the same gradient
        programs[name] = fn
    times = {name: [] for name in programs}
    for _ in range(args.rounds):
        for name, fn in programs.items():
            t = time.perf_counter()
            for _ in range(10):
                out = fn(inputs)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - t) / 10 * 1000)
    size = f"{args.image_size}x{args.image_size}"
    print(f"kernel gradient of the {len(shapes)} depthwise layers, batch {args.batch}, {size}")
    print("| form | min ms | median ms |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts):.2f} | {statistics.median(ts):.2f} |")
    summary = {name: round(statistics.median(ts), 3) for name, ts in times.items()}
    print(json.dumps({"batch": args.batch, "image_size": args.image_size, "median_ms": summary}))


if __name__ == "__main__":
    main()
