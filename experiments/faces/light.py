"""Light and detail levels of a face crop (``faces.level``): their ranges, and what they cost on clean faces.

    python experiments/faces/light.py --data_dir DATA [--cache_dir DIR] [--out experiments/faces/light_cpu.json]

1. The ranges: FERPlus Train's faces' own per-image statistics (the 10th percentile of the
   standard deviation of their pixels, the 10th and 90th of their mean, the 5th of the variance
   of their Laplacian over the variance of their pixels), which ``faces.LIGHT_MIN_STD``,
   ``faces.LIGHT_MEAN_RANGE`` and ``faces.DETAIL_MIN_RATIO`` hold.
2. Clean faces: the shipped model (its 12 test-time views) on FERPlus Valid's stored crops as
   they are, light levelled, and light and detail levelled (predict's default), accuracy and mean
   per-class; how many crops each changes.

What it does on dim, low-contrast and other degraded frames is the hard set's (``study.py --hard
--light levels,raw``). The test split is never read.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from detectors import shipped_model_and_data  # noqa: E402

from amobilenet_jax.runtime import machine  # noqa: E402


def scores(predicted: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    per_class = [float(np.mean(predicted[labels == k] == k)) for k in range(classes) if np.any(labels == k)]
    return {"accuracy": float(np.mean(predicted == labels)), "mean_per_class": float(np.mean(per_class))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--cache_dir", default="")
    parser.add_argument("--out", default="experiments/faces/light_cpu.json")
    args = parser.parse_args()
    from amobilenet_jax import faces, runtime

    runtime.configure()
    from amobilenet_jax.data.augment import num_views
    from amobilenet_jax.files import write_json_atomic

    model, data = shipped_model_and_data(args.data_dir, args.cache_dir)
    train, valid = data.split("train"), data.split("valid")
    import cv2

    pixels = train.images.astype(np.float64)
    means, stds = pixels.mean((1, 2, 3)), pixels.std((1, 2, 3))
    grey = train.images.astype(np.float32).mean(axis=3)
    detail = np.array([cv2.Laplacian(g, cv2.CV_32F, borderType=cv2.BORDER_REPLICATE).var() for g in grey])
    detail = detail / np.maximum(grey.reshape(len(grey), -1).var(axis=1), 1e-6)
    train_range = {
        "std_p10": float(np.percentile(stds, 10)),
        "mean_p10": float(np.percentile(means, 10)),
        "mean_p90": float(np.percentile(means, 90)),
        "detail_ratio_p5": float(np.percentile(detail, 5)),
    }
    print(f"FERPlus Train ({len(means)} faces): {train_range}", flush=True)
    print(f"faces.LIGHT_MIN_STD {faces.LIGHT_MIN_STD}, faces.LIGHT_MEAN_RANGE {faces.LIGHT_MEAN_RANGE}, "
          f"faces.DETAIL_MIN_RATIO {faces.DETAIL_MIN_RATIO}", flush=True)  # fmt: skip

    variants = {
        "as stored": valid.images,
        "light levelled": np.stack([faces.level_light(image) for image in valid.images]),
        "light and detail levelled": np.stack([faces.level(image) for image in valid.images]),
    }
    changed = {name: int(np.sum(np.any(v != valid.images, axis=(1, 2, 3)))) for name, v in variants.items()}
    classes = len(model.class_names)
    rows = {}
    for name, images in variants.items():
        rows[name] = {**scores(np.argmax(model.logits(images), -1), valid.labels, classes), "changed": changed[name]}
        print(f"Valid, {name}: {rows[name]}", flush=True)
    result = {
        "question": "the light and detail levels' ranges, and what levelling costs on clean faces "
        "(FERPlus Valid, stored crops)",
        "command": "python experiments/faces/light.py --data_dir DATA --cache_dir CACHE",
        "machine": machine(),
        "train_faces": len(means),
        "train_range": train_range,
        "light_min_std": faces.LIGHT_MIN_STD,
        "light_mean_range": list(faces.LIGHT_MEAN_RANGE),
        "detail_min_ratio": faces.DETAIL_MIN_RATIO,
        "valid_faces": len(valid.labels),
        "views": num_views(model.config),
        "valid": rows,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
