"""How predict should crop a detected face: the margin around OpenCV's box that best matches
the FER+ training crops, measured on FERPlus Valid.

    python experiments/use/crop_margin.py --data_dir DATA [--cache_dir DIR] [--out experiments/use/crop_margin_cpu.json]

Each Valid image (a 48x48 face crop) is enlarged 4x and framed by 48 px of repeated border,
so the Haar cascade of ``amobilenet_jax.faces`` has a face to find; the face it finds is
cropped with ``faces.crop`` at several margins and classified by the shipped model. The
accuracy on the images with a face found is set beside the model's accuracy on the same
images as stored (no detection): the margin whose crops read as well as the originals is
predict's default.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--cache_dir", default="")
    parser.add_argument("--out", default="experiments/use/crop_margin_cpu.json")
    args = parser.parse_args()
    from amobilenet_jax import runtime

    runtime.configure()
    import cv2

    from amobilenet_jax import faces, inference
    from amobilenet_jax.data import load_dataset

    model = inference.load_model()
    data_config = model.config.data.copy_and_resolve_references()
    with data_config.unlocked():
        data_config.dir, data_config.cache_dir = args.data_dir, args.cache_dir
    split = load_dataset(data_config).split("valid")
    images, labels = split.images, split.labels
    detector = faces.FaceDetector(min_face=80, detect_width=0)
    start = time.perf_counter()
    found, boxes = [], []
    for i, image in enumerate(images):
        big = cv2.resize(image[:, :, 0], (192, 192), interpolation=cv2.INTER_CUBIC)
        framed = cv2.copyMakeBorder(big, 48, 48, 48, 48, cv2.BORDER_REPLICATE)
        detected = detector.detect(framed)
        if detected:
            found.append(i)
            boxes.append((framed, detected[0].box))
    detect_s = time.perf_counter() - start
    found = np.asarray(found)
    stored = np.argmax(model.logits(images[found]), -1)
    rows = [
        {
            "margin": None,
            "what": "stored 48x48 crops, no detection",
            "accuracy": float(np.mean(stored == labels[found])),
        }
    ]
    for margin in MARGINS:
        crops = np.stack([faces.crop(framed, box, model.native_shape, margin) for framed, box in boxes])
        pred = np.argmax(model.logits(crops), -1)
        rows.append(
            {"margin": margin, "what": "detected and cropped", "accuracy": float(np.mean(pred == labels[found]))}
        )
    box_sides = np.asarray([box[2] for _, box in boxes]) / 192.0
    result = {
        "command": "python experiments/use/crop_margin.py --data_dir DATA",
        "machine": runtime.machine(),
        "model": model.source.split("experiments/")[-1],
        "valid_images": int(len(images)),
        "faces_found": int(len(found)),
        "detection_rate": float(len(found) / len(images)),
        "box_side_over_crop_side_median": float(np.median(box_sides)),
        "detect_s": round(detect_s, 1),
        "rows": rows,
    }
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
