"""Batch-1 inference latency of the shipped model on ONNX Runtime, JAX and the PyTorch peer, side by side.

    python experiments/use/onnx_latency.py                   # writes experiments/use/onnx_latency_cpu.json

One process, 2 threads each, one 48x48 face per call, already prepared (float32 [1, 48, 48, 3]),
one view (no test-time flip):

- ``onnxruntime``: the shipped model exported by ``amobilenet_jax.export`` (grouped depthwise
  Conv, BatchNorm folded), CPU provider, ``intra_op_num_threads=2``;
- ``onnxruntime_shift``: the same graph with the depthwise convs written as the shifted
  multiply-adds the JAX model runs on CPU (``to_onnx(depthwise="shift")``), to show which form
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


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
    face = export.sample_faces(model.native_shape, 1)  # the astronaut, uint8 [1, 48, 48, 1]
    x = np.asarray(prepare_images(jax.numpy.asarray(face), model.config), np.float32)

    def session(proto):
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    proto = export.to_onnx(model)
    s_conv, s_shift = session(proto), session(export.to_onnx(model, depthwise="shift"))
    forward = jax.jit(lambda v, x: model.module.apply(v, x, train=False)[0])
    xj = jax.device_put(x)
    onnx_model = export.OnnxModel(proto.SerializeToString(), threads=THREADS)
    peer_call, peer_info = torch_peer()

    ref = np.asarray(forward(model.variables, xj))
    diff = float(np.abs(s_conv.run(["logits"], {"image": x})[0] - ref).max())
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
            "cpu": cpu_name(),
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
