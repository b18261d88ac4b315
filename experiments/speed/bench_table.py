"""Markdown table of a benchmark run: each amobilenet_jax row beside the peer's.

    python experiments/speed/bench_table.py experiments/speed/benchmarks_cpu.jsonl

Rows come in the order measured. ``vs ... peer`` is the JAX latency / peer latency for
inference and JAX throughput / peer throughput for training, against the peer row
(eager, or ``--compile``) of the same mode, batch and image size measured closest
before it, else the first after it. ``GFLOP/s`` is XLA's cost-analysis FLOPs per
image times images per second; ``of peak`` divides it by the run's measured matmul peak.
"""

from __future__ import annotations

import json
import sys


def _ratio(row: dict, peer: dict | None) -> str:
    if peer is None:
        return ""
    if row["mode"] == "infer":
        return f"{row['ms_per_step'] / peer['ms_per_step']:.2f}× latency"
    return f"{row['images_per_s'] / peer['images_per_s']:.2f}× throughput"


def _nearest(rows: list[tuple[int, dict]], position: int) -> dict | None:
    """The peer row measured closest before ``position``, else the first after it."""
    before = [r for i, r in rows if i < position]
    after = [r for i, r in rows if i > position]
    return before[-1] if before else (after[0] if after else None)


def table(lines: list[dict]) -> str:
    peak = next((r for r in lines if r.get("mode") == "peak"), None)
    peak_gflops = max(v for k, v in peak.items() if k.startswith("matmul_")) if peak else None
    peers: dict[tuple, list[tuple[int, dict]]] = {}
    for i, r in enumerate(lines):
        if r.get("peer") and not r.get("failed"):
            key = (r["mode"], r["batch"], r["image_size"], bool(r.get("compile")))
            peers.setdefault(key, []).append((i, r))
    compiled = any(key[3] for key in peers)
    out = [
        "| mode | batch | size | impl | dtype | ms/step | img/s | vs eager peer"
        + (" | vs compiled peer" if compiled else "")
        + " | GFLOP/s | of peak |",
        "|---|---|---|---|---|---|---|---" + ("|---" if compiled else "") + "|---|---|",
    ]
    for i, r in enumerate(lines):
        if r.get("failed"):
            out.append(f"| {r.get('label', '?')}: failed |")
            continue
        if r.get("mode") == "peak":
            continue
        key = (r["mode"], r["batch"], r["image_size"])
        dtype = "bfloat16" if r.get("bf16") else "float32"
        if r.get("peer"):
            name = "PyTorch " + ("compiled" if r.get("compile") else "eager")
            cells = [r["mode"], r["batch"], r["image_size"], name, dtype]
            cells += [f"{r['ms_per_step']:.1f}", f"{r['images_per_s']:.1f}", ""] + ([""] if compiled else []) + ["", ""]
        else:
            gflops = r["flops_per_image"] * r["images_per_s"] / 1e9
            impl = f"JAX {r['depthwise']}" + (
                ", no cpu_runtime" if r.get("cpu_tuning") is False and r["mode"] == "train" else ""
            )
            cells = [r["mode"], r["batch"], r["image_size"], impl, r["dtype"]]
            cells += [f"{r['ms_per_step']:.1f}", f"{r['images_per_s']:.1f}"]
            cells.append(_ratio(r, _nearest(peers.get(key + (False,), []), i)))
            if compiled:
                cells.append(_ratio(r, _nearest(peers.get(key + (True,), []), i)))
            cells += [f"{gflops:.1f}", f"{100 * gflops / peak_gflops:.0f}%" if peak_gflops else ""]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    head = ""
    if peak:
        head = (
            f"Measured limits of the machine (`--mode peak`): matmul {peak_gflops:.0f} GFLOP/s "
            f"({peak['dtype']}), memory {peak['stream_gb_per_s']} GB/s (read + write of a 256 MB array in place).\n\n"
        )
    return head + "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(table([json.loads(line) for line in f if line.strip()]))
