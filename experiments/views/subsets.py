"""What fewer test-time views would cost the shipped model on FERPlus Valid, and what a view costs.

    python experiments/views/subsets.py --data_dir DATA [--cache_dir CACHE] \\
        [--out experiments/views/subsets_cpu.json]

Each of the 12 views (the face, 5 crops, each with its mirror image) goes through the model on
its own; their logits are kept per view, so any subset's vote is a sum of columns. Reported:
named subsets, the spread over every subset of a size (10th, 50th, 90th percentile of accuracy
and of mean per-class accuracy), and the best subset of each size, which is chosen on Valid
itself and so reads optimistic. Then the model's time per image at several batch sizes (one
call, nothing else running): a view costs a forward pass, whatever program sends it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "faces"))

from detectors import shipped_model_and_data  # noqa: E402

# Column order of the per-view logits: vote's order (the face, its mirror, then each crop and its mirror).
VIEWS = ("face", "face_m", "centre", "centre_m", "tl", "tl_m", "tr", "tr_m", "bl", "bl_m", "br", "br_m")
NAMED = {
    "all 12 (shipped)": VIEWS,
    "the face and its mirror (two-view evaluation)": ("face", "face_m"),
    "the face alone": ("face",),
    "face and centre crop, each mirrored (4)": ("face", "face_m", "centre", "centre_m"),
    "the face and 4 corners, unmirrored (5)": ("face", "tl", "tr", "bl", "br"),
    "the face and its mirror, 4 corners unmirrored (6)": ("face", "face_m", "tl", "tr", "bl", "br"),
    "the 6 unmirrored views": ("face", "centre", "tl", "tr", "bl", "br"),
    "the 5 crops, each mirrored (10)": VIEWS[2:],
}


def scores(logits: np.ndarray, labels: np.ndarray, columns) -> tuple[float, float]:
    predicted = logits[:, list(columns)].sum(1).argmax(1)
    per_class = [np.mean(predicted[labels == k] == k) for k in range(logits.shape[2]) if np.any(labels == k)]
    return round(100 * float(np.mean(predicted == labels)), 2), round(100 * float(np.mean(per_class)), 2)


def per_view_logits(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from amobilenet_jax.data.augment import view_batches

    @jax.jit
    def views(x_uint8):
        out = []
        for x in view_batches(x_uint8, model.config):
            for y in (x, x[:, :, ::-1, :]):
                out.append(model.module.apply(model.variables, y, train=False)[0])
        return jnp.stack(out, 1)

    out = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        padded = np.zeros((batch, *chunk.shape[1:]), np.uint8)
        padded[: len(chunk)] = chunk
        out.append(np.asarray(views(jnp.asarray(padded)))[: len(chunk)])
    return np.concatenate(out)


def time_per_image(model, sizes=(8, 16, 24, 32, 64, 192)) -> dict:
    import jax
    import jax.numpy as jnp

    forward = jax.jit(lambda v, x: model.module.apply(v, x, train=False)[0])
    side = model.config.data.image_size
    cost = forward.lower(model.variables, jnp.zeros((1, side, side, 3))).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    rows = {"mflop_per_image": round(float(cost.get("flops", 0.0)) / 1e6, 1)}
    for size in sizes:
        x = jnp.zeros((size, side, side, 3))
        forward(model.variables, x).block_until_ready()
        times = []
        for _ in range(max(5, 384 // size)):
            start = time.perf_counter()
            forward(model.variables, x).block_until_ready()
            times.append(time.perf_counter() - start)
        rows[f"batch {size}: ms per image (median)"] = round(1e3 * float(np.median(times)) / size, 3)
        print(f"batch {size}: {1e3 * np.median(times) / size:.3f} ms per image", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--cache_dir", default="")
    parser.add_argument("--out", default="experiments/views/subsets_cpu.json")
    args = parser.parse_args()
    from amobilenet_jax import runtime

    runtime.configure()
    from amobilenet_jax.files import write_json_atomic

    model, data = shipped_model_and_data(args.data_dir, args.cache_dir)
    valid = data.split("valid")
    start = time.perf_counter()
    logits = per_view_logits(model, valid.images)
    print(f"{len(valid.images)} Valid faces x {len(VIEWS)} views in {time.perf_counter() - start:.1f} s", flush=True)
    labels = np.asarray(valid.labels)
    index = {name: i for i, name in enumerate(VIEWS)}
    named = {}
    for name, views in NAMED.items():
        accuracy, mean_per_class = scores(logits, labels, [index[v] for v in views])
        named[name] = {"views": list(views), "accuracy": accuracy, "mean_per_class": mean_per_class}
        print(f"{name}: {accuracy:.2f}% / {mean_per_class:.2f}%", flush=True)
    by_size = {}
    for size in range(1, len(VIEWS) + 1):
        results = [(scores(logits, labels, c), c) for c in itertools.combinations(range(len(VIEWS)), size)]
        accuracy = np.array([r[0][0] for r in results])
        mean_per_class = np.array([r[0][1] for r in results])
        (best_accuracy, best_mean_per_class), best_views = max(results, key=lambda r: r[0])
        by_size[str(size)] = {
            "subsets": len(results),
            "accuracy_p10_p50_p90": [round(float(v), 2) for v in np.percentile(accuracy, [10, 50, 90])],
            "mean_per_class_p10_p50_p90": [round(float(v), 2) for v in np.percentile(mean_per_class, [10, 50, 90])],
            "best_on_valid": {
                "views": [VIEWS[i] for i in best_views],
                "accuracy": best_accuracy,
                "mean_per_class": best_mean_per_class,
            },
        }
        print(f"{size} views: median {np.median(accuracy):.2f}% / {np.median(mean_per_class):.2f}%", flush=True)
    write_json_atomic(
        args.out,
        {
            "machine": runtime.machine(),
            "command": "python experiments/views/subsets.py --data_dir DATA --cache_dir CACHE",
            "model": "the shipped FERPlus model (amobilenet_jax/assets/ferplus_amobilenet)",
            "valid_faces": len(labels),
            "named": named,
            "by_size": by_size,
            "time_per_image": time_per_image(model),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
