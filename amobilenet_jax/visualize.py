"""Where A-MobileNet looks: each CBAM spatial attention map over each face it finds.

    python -m amobilenet_jax.visualize photo.jpg photos/ --out attention/   # the shipped FERPlus model
    python -m amobilenet_jax.visualize --workdir runs/x photo.jpg --out attention/

For every face (found and cropped as ``predict`` does), ``DIR/<image>_face<i>.png`` shows the
model's input crop, then each CBAM block's spatial map (paper Eq. 3; the blocks the model has
CBAM after, 4, 6, 11 and 13 in the paper) resized to the crop and overlaid on it, titled with the
predicted expression. ``DIR/attention_grid.png`` stacks all faces, one row each. The maps are
those of the whole, unflipped face's forward pass, the first of the views that classify it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def overlay(face_gray: np.ndarray, amap: np.ndarray) -> np.ndarray:
    """RGB float image: the face in gray with the map (min-max scaled, resized to the face) in colour."""
    import cv2
    from matplotlib import colormaps

    h, w = face_gray.shape[:2]
    resized = cv2.resize(amap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    span = float(resized.max() - resized.min())
    scaled = (resized - resized.min()) / span if span > 0 else np.zeros_like(resized)
    heat = colormaps["jet"](scaled)[:, :, :3]
    gray = np.repeat(face_gray.reshape(h, w, 1).astype(np.float32) / 255.0, 3, axis=2)
    return 0.55 * gray + 0.45 * heat


def check_attention(model) -> None:
    """A ValueError unless ``model`` gives CBAM attention maps (a JAX model with CBAM blocks)."""
    if getattr(model, "variables", None) is None:  # ONNX Runtime's model: the graph's output is the logits
        raise ValueError(f"{model.source}: an ONNX model gives no attention maps (load the weights instead)")
    if not model.config.model.get("cbam", False) and model.config.model.name != "amobilenet":
        raise ValueError(f"{model.source}: this model has no CBAM blocks, so no attention maps to show")


def attention(model, crops: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(probabilities [N, K], {block: spatial maps [N, h, w]})`` of face crops ``[N, *native_shape]``,
    the blocks in the model's order; the maps are those of the whole, unflipped face's forward pass."""
    from amobilenet_jax import inference

    logits, maps = model.logits(crops, return_attention=True)
    blocks = sorted(maps, key=lambda b: int(b.replace("block", "")))
    return inference.probabilities_from_logits(logits, model.config), {b: maps[b] for b in blocks}


def _figure(rows: list[dict], blocks: list[str], path: str) -> None:
    """One row per face: the crop, then one overlay per CBAM block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 + len(blocks)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 2.1 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        face = row["face"]
        axes[r, 0].imshow(face, cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_title(f"{row['label']} {row['score']:.2f}", fontsize=8)
        for c, block in enumerate(blocks, start=1):
            axes[r, c].imshow(overlay(face, row["attention"][block]))
            size = row["attention"][block].shape
            axes[r, c].set_title(f"{block} ({size[0]}x{size[1]})", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
        axes[r, 0].text(0, -0.02, row["name"], transform=axes[r, 0].transAxes, fontsize=6, va="top")
    fig.tight_layout()
    from amobilenet_jax.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run(args) -> int:
    from amobilenet_jax import faces as faces_lib
    from amobilenet_jax import inference, predict

    model = inference.load_model(workdir=args.workdir, weights=args.weights)
    check_attention(model)
    detector = faces_lib.make_detector(args.detector, min_face=args.min_face, detect_width=args.detect_width)
    os.makedirs(args.out, exist_ok=True)
    rows, failures = [], 0
    for path, key in predict.expand_inputs(args.inputs):
        if predict.is_video(path):
            print(json.dumps({"file": path, "error": "visualize takes photos; use predict for videos"}), flush=True)
            failures += 1
            continue
        try:
            rgb = predict.read_image(path)
        except ValueError as e:
            print(json.dumps({"file": path, "error": str(e)}), flush=True)
            failures += 1
            continue
        found = detector.detect(rgb)
        if not found:
            print(json.dumps({"file": path, "face": None, "message": "no face found"}), flush=True)
            continue
        geometry = faces_lib.CROP_GEOMETRY[args.detector]
        levelled = [None if args.no_align else f.landmarks for f in found]  # eyes level, as predict crops
        crops = np.stack([
            faces_lib.crop(rgb, f.box, model.native_shape, args.margin, geometry, landmarks)
            for f, landmarks in zip(found, levelled)
        ])  # fmt: skip
        if not args.no_levels:  # light and detail levelled, as predict classifies
            crops = np.stack([faces_lib.level(c) for c in crops])
        probabilities, maps = attention(model, crops)
        stem = os.path.splitext(key)[0].replace(os.sep, "_")
        for i, face in enumerate(found):
            top = int(np.argmax(probabilities[i]))
            gray = faces_lib.to_gray(crops[i])
            row = {
                "name": f"{os.path.basename(path)} face {i}",
                "face": gray,
                "label": model.class_names[top],
                "score": float(probabilities[i][top]),
                "attention": {block: block_maps[i] for block, block_maps in maps.items()},
            }
            out = os.path.join(args.out, f"{stem}_face{i}.png")
            _figure([row], _blocks(row), out)
            rows.append(row)
            record = {
                "file": path,
                "face": i,
                "box": list(face.box),
                "label": row["label"],
                "score": round(row["score"], 4),
            }
            print(json.dumps({**record, "image": out}), flush=True)
    if rows:
        grid = os.path.join(args.out, "attention_grid.png")
        _figure(rows[: args.max_grid], _blocks(rows[0]), grid)
        print(f"visualize: {len(rows)} faces; per-face images and {grid} in {args.out}", file=sys.stderr)
    else:
        print(f"visualize: no faces found in {len(args.inputs)} input(s)", file=sys.stderr)
    return 0 if rows else 1


def _blocks(row: dict) -> list[str]:
    return sorted(row["attention"], key=lambda b: int(b.replace("block", "")))


def parse_args(argv=None):
    from amobilenet_jax import faces as faces_lib

    parser = argparse.ArgumentParser(
        prog="python -m amobilenet_jax.visualize",
        description="CBAM spatial attention maps over every face in photos (default: the shipped FERPlus model).",
    )
    parser.add_argument("inputs", nargs="+", help="image files and folders (searched recursively)")
    parser.add_argument("--out", required=True, help="folder for the per-face images and attention_grid.png")
    parser.add_argument("--workdir", help="a run directory (its weights.msgpack, which a finished run writes)")
    parser.add_argument("--weights", help="a weights file with its config.json beside it")
    parser.add_argument(
        "--detector", choices=faces_lib.DETECTORS, default=faces_lib.DEFAULT_DETECTOR, help="as predict's --detector"
    )
    parser.add_argument("--min_face", type=int, default=40, help="smallest face side kept, in pixels")
    parser.add_argument("--detect_width", type=int, default=640, help="images are shrunk to this width to find faces")
    parser.add_argument("--margin", type=float, default=0.0, help="grow the face box by this much of its side")
    parser.add_argument(
        "--no_align", action="store_true", help="cut faces out as found, without levelling the eyes (as predict)"
    )
    parser.add_argument(
        "--no_levels",
        action="store_true",
        help="classify crops as cut out, without levelling their light and detail (as predict)",
    )
    parser.add_argument("--max_grid", type=int, default=24, help="faces in the grid image at most")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    from amobilenet_jax.inference import command_main

    command_main("visualize", parse_args, run, argv)


if __name__ == "__main__":
    main()
