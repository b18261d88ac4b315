"""Batch-1 inference latency of the shipped model on ONNX Runtime, JAX and the PyTorch peer, side by side.

    python experiments/use/onnx_latency.py                   # writes experiments/use/onnx_latency_cpu.json

One process, 2 threads each, one 48x48 face per call (the astronaut's, ``astronaut_face``),
already prepared (float32 [1, 48, 48, 3]), one view (no test-time flip):

- ``onnxruntime``: the shipped model exported by ``amobilenet_jax.export`` (grouped depthwise
  Conv, BatchNorm folded), CPU provider, ``intra_op_num_threads=2``;
- ``onnxruntime_shift``: the same graph with the depthwise convs rewritten as the shifted
  multiply-adds the JAX model runs on CPU (``depthwise_as_shifts`` below), to show which form
  ONNX Runtime runs best;
- ``jax``: the jitted inference forward pass (``module.apply(train=False)``) of the same model,
  ``depthwise_impl="auto"``, with ``runtime.configure()`` applied as the command-line tools do;
- ``pytorch``: the peer (../shared/bench/torch_peer.py, via experiments/ferplus_cpu/torch_peer_stem1.py's
  change: stem stride 1) in eval mode, channels_last, ``torch.inference_mode``,
  ``torch.set_num_threads(2)``; random weights (latency does not depend on their values);
- ``*_pipeline`` rows: one uint8 face through ``predict``'s whole call, ``Model.logits`` /
  ``OnnxModel.logits`` (preparation, and both views as the shipped model evaluates with flip).

The runtimes take turns: each round times ``--calls`` calls of each in a row, so drift of this
shared virtual machine spreads over all of them; every call is timed on its own and a row
reports the median (and 10th/90th percentiles) over all rounds.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
PEER = os.environ.get("PEER", os.path.join(REPO, "..", "shared", "bench", "torch_peer.py"))
THREADS = 2


def torch_peer():
    import torch

    spec = importlib.util.spec_from_file_location("torch_peer", PEER)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    net = peer.build("amobilenet", 8)
    net[0].stride = (1, 1)  # the recipe's stem stride, as experiments/ferplus_cpu/torch_peer_stem1.py
    net = net.eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 48, 48).contiguous(memory_format=torch.channels_last)

    def call():
        with torch.inference_mode():
            return net(x)

    params = sum(p.numel() for p in net.parameters())
    return call, {"torch": torch.__version__, "params": params, "threads": torch.get_num_threads()}


def astronaut_face(native_shape: tuple[int, int, int]):
    """The face of scikit-image's astronaut photo (with hair and chin, square) as uint8
    ``[1, *native_shape]``."""
    import numpy as np
    from skimage import color, data, transform

    height, width, channels = native_shape
    image = data.astronaut()[25:185, 140:300] / 255.0
    if channels == 1:
        image = color.rgb2gray(image)
    image = transform.resize(image, (height, width), anti_aliasing=True)
    if image.ndim == 2:
        image = np.repeat(image[..., None], channels, axis=-1)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)[None]


def depthwise_as_shifts(proto):
    """``proto`` with every grouped (depthwise) ``Conv`` rewritten as Pad, then k*k strided Slices
    each times its per-channel weight, summed, plus the bias: the form the JAX model runs on CPU."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in proto.graph.initializer}
    added, used, nodes = [], set(), []

    def const(name, value, dtype):
        added.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(op_type, inputs, name, output=None):
        nodes.append(helper.make_node(op_type, inputs, [output or name], name=name))
        return output or name

    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Conv" or attrs.get("group", 1) == 1:
            nodes.append(node)
            continue
        x, w_name, b_name = node.input
        weight = numpy_helper.to_array(weights[w_name])  # [C, 1, k, k]
        bias = numpy_helper.to_array(weights[b_name])
        used |= {w_name, b_name}
        k, p, stride = weight.shape[-1], attrs["pads"][0], attrs["strides"][0]
        name = node.name.rsplit("/", 1)[0]
        padded = op("Pad", [x, const(f"{name}/pads", [0, 0, p, p, 0, 0, p, p], np.int64)], f"{name}/pad")
        axes, steps = const(f"{name}/axes", [2, 3], np.int64), const(f"{name}/steps", [stride, stride], np.int64)
        out = None
        for i in range(k):
            for j in range(k):
                tap = f"{name}/tap{i}{j}"
                # Ends counted from the padded map's end: the tap's (size + 2p - k) // stride + 1 outputs.
                end = [i - (k - 1) if i < k - 1 else 2**62, j - (k - 1) if j < k - 1 else 2**62]
                start, stop = const(f"{tap}/start", [i, j], np.int64), const(f"{tap}/end", end, np.int64)
                view = op("Slice", [padded, start, stop, axes, steps], f"{tap}/view")
                w = const(f"{tap}/w", weight[:, 0, i, j].reshape(-1, 1, 1), np.float32)
                term = op("Mul", [view, w], f"{tap}/mul")
                out = term if out is None else op("Add", [out, term], f"{tap}/add")
        op("Add", [out, const(f"{name}/bias", bias.reshape(-1, 1, 1), np.float32)], node.name, node.output[0])
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(proto)
    del rewritten.graph.node[:], rewritten.graph.initializer[:]
    rewritten.graph.node.extend(nodes)
    rewritten.graph.initializer.extend([t for t in proto.graph.initializer if t.name not in used] + added)
    onnx.checker.check_model(rewritten, full_check=True)
    return rewritten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=100, help="timed calls of each runtime per round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "use", "onnx_latency_cpu.json"))
    args = parser.parse_args()

    from amobilenet_jax import runtime

    runtime.configure()
    import jax
    import numpy as np
    import onnxruntime as ort

    from amobilenet_jax import export, inference
    from amobilenet_jax.data.augment import prepare_images

    model = inference.load_model()
    face = astronaut_face(model.native_shape)  # uint8 [1, 48, 48, 1]
    x = np.asarray(prepare_images(jax.numpy.asarray(face), model.config), np.float32)

    def session(proto):
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    proto = export.to_onnx(model)
    s_conv, s_shift = session(proto), session(depthwise_as_shifts(proto))
    forward = jax.jit(lambda v, x: model.module.apply(v, x, train=False)[0])
    xj = jax.device_put(x)
    onnx_model = export.OnnxModel(proto.SerializeToString(), threads=THREADS)
    peer_call, peer_info = torch_peer()

    ref = np.asarray(forward(model.variables, xj))
    diff = float(np.abs(s_conv.run(["logits"], {"image": x})[0] - ref).max())
    diff_shift = float(np.abs(s_shift.run(["logits"], {"image": x})[0] - ref).max())
    if not max(diff, diff_shift) < 1e-4:  # time only graphs that compute the model
        raise SystemExit(f"the ONNX graphs differ from JAX by {diff:.1e} (grouped) and {diff_shift:.1e} (shifts)")
    runtimes = {
        "onnxruntime": lambda: s_conv.run(["logits"], {"image": x}),
        "onnxruntime_shift": lambda: s_shift.run(["logits"], {"image": x}),
        "jax": lambda: forward(model.variables, xj).block_until_ready(),
        "pytorch": peer_call,
        "onnxruntime_pipeline": lambda: onnx_model.logits(face),
        "jax_pipeline": lambda: model.logits(face),
    }
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    per_round: dict[str, list[float]] = {name: [] for name in runtimes}
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    for call in runtimes.values():
        for _ in range(args.warmup):
            call()
    for _ in range(args.rounds):
        for name, call in runtimes.items():
            this_round = []
            for _ in range(args.calls):
                t = time.perf_counter()
                call()
                this_round.append(1000.0 * (time.perf_counter() - t))
            times[name] += this_round
            per_round[name].append(round(statistics.median(this_round), 3))
    wall = time.perf_counter() - t_start
    params = int(sum(np.size(v) for v in jax.tree.leaves(model.variables["params"])))

    def row(name):
        q = np.percentile(times[name], [10, 50, 90])
        return {"median_ms": round(float(q[1]), 3), "p10_ms": round(float(q[0]), 3), "p90_ms": round(float(q[2]), 3),
                "round_medians_ms": per_round[name], "calls": len(times[name])}  # fmt: skip

    result = {
        "what": "batch-1 inference latency, 48x48 A-MobileNet (stem stride 1), one prepared face, one view",
        "command": "python experiments/use/onnx_latency.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpu": runtime.cpu_name(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "versions": {"jax": jax.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__, **peer_info},
        "model": {"source": os.path.relpath(model.source, REPO), "params": params},
        "threads": THREADS,
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "warmup_calls": args.warmup,
        "wall_s": round(wall, 1),
        "max_abs_logit_diff_onnx_vs_jax": diff,
        "max_abs_logit_diff_onnx_shift_vs_jax": diff_shift,
        "results": {name: row(name) for name in runtimes},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"{'runtime':24s} {'median ms':>10s} {'p10':>8s} {'p90':>8s}")
    for name, r in result["results"].items():
        print(f"{name:24s} {r['median_ms']:10.3f} {r['p10_ms']:8.3f} {r['p90_ms']:8.3f}")
    print(f"wrote {args.out} ({wall:.0f} s; load average {load_before[0]:.2f} before)")


if __name__ == "__main__":
    main()
