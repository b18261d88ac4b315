"""Light levels of a face crop (``faces.level_light``): where its range comes from, and what it costs on clean faces.

    python experiments/faces/light.py --data_dir DATA [--cache_dir DIR] [--out experiments/faces/light_cpu.json]

1. The range: FERPlus Train's faces' own per-image statistics (the 10th percentile of the
   standard deviation of their pixels, the 10th and 90th of their mean), which
   ``faces.LIGHT_MIN_STD`` and ``faces.LIGHT_MEAN_RANGE`` hold.
2. Clean faces: the shipped model (its 12 test-time views) on FERPlus Valid's stored crops as
   they are and levelled, accuracy and mean per-class; how many crops levelling changes.

What it does on dim, low-contrast and other degraded frames is the hard set's (``study.py --hard
--light levels,raw``). The test split is never read.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

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
    from amobilenet_jax import faces, inference, runtime

    runtime.configure()
    from amobilenet_jax.data import load_dataset
    from amobilenet_jax.data.augment import num_views
    from amobilenet_jax.files import write_json_atomic

    model = inference.load_model()
    data_config = model.config.data.copy_and_resolve_references()
    with data_config.unlocked():
        data_config.dir, data_config.cache_dir = args.data_dir, args.cache_dir
    data = load_dataset(data_config, splits=("train", "valid"))
    train, valid = data.split("train"), data.split("valid")
    pixels = train.images.astype(np.float64)
    means, stds = pixels.mean((1, 2, 3)), pixels.std((1, 2, 3))
    train_range = {
        "std_p10": float(np.percentile(stds, 10)),
        "mean_p10": float(np.percentile(means, 10)),
        "mean_p90": float(np.percentile(means, 90)),
    }
    print(f"FERPlus Train ({len(means)} faces): {train_range}", flush=True)
    print(f"faces.LIGHT_MIN_STD {faces.LIGHT_MIN_STD}, faces.LIGHT_MEAN_RANGE {faces.LIGHT_MEAN_RANGE}", flush=True)

    levelled = np.stack([faces.level_light(image) for image in valid.images])
    changed = int(np.sum(np.any(levelled != valid.images, axis=(1, 2, 3))))
    classes = len(model.class_names)
    rows = {}
    for name, images in (("as stored", valid.images), ("levelled", levelled)):
        rows[name] = scores(np.argmax(model.logits(images), -1), valid.labels, classes)
        print(f"Valid, {name}: {rows[name]}", flush=True)
    result = {
        "question": "the light levels' range, and what levelling costs on clean faces (FERPlus Valid, stored crops)",
        "command": "python experiments/faces/light.py --data_dir DATA --cache_dir CACHE",
        "machine": machine(),
        "train_faces": len(means),
        "train_range": train_range,
        "light_min_std": faces.LIGHT_MIN_STD,
        "light_mean_range": list(faces.LIGHT_MEAN_RANGE),
        "valid_faces": len(valid.labels),
        "valid_crops_changed": changed,
        "views": num_views(model.config),
        "valid": rows,
    }
    write_json_atomic(args.out, result)
    print(f"{changed} of {len(valid.labels)} Valid crops changed; wrote {args.out}")


if __name__ == "__main__":
    main()
