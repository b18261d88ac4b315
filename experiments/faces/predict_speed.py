"""``predict`` end to end on a 640x480 video with one face, with each face detector.

    python experiments/faces/predict_speed.py [--seconds 10] [--out experiments/faces/predict_speed_cpu.json]

The video is ``experiments/use/predict_speed.py``'s (the astronaut's head drifting and scaling
across a plain background, mp4v, 25 frames/s). Each run is the real command (a subprocess:
decode, detect, crop, classify, write the annotated copy and a CSV); frames/s come from
predict's own summary line, which leaves out start-up. A first run fills the compilation cache.

For ``--detect_every N`` runs, the faces carried along their tracks (``detector_score`` empty)
are compared with the faces the detector found in the same frames when it looked at every
frame (the default run): their boxes' IoU, and whether the label is the same.

``--pair_with SRC --pairs N`` times instead the default command (``predict clip.mp4``, nothing
written) with the code in another checkout (SRC: its package, run from there) and with this one, N pairs,
the order swapped every pair, so that the VM's drift falls on both alike.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "use"))

from predict_speed import checkout_commit, make_video, run  # noqa: E402

from amobilenet_jax.runtime import machine  # noqa: E402

DETECTORS = {
    "retinaface, detector on every frame (whole 640 px frame)": ["--detect_every", "1"],
    "retinaface, detector on every 2nd frame": ["--detect_every", "2"],
    "retinaface (default: detector on every 3rd frame, eyes levelled)": [],
    "retinaface, every 3rd frame, --no_align": ["--no_align"],
    "retinaface, every 3rd frame, --no_crops (2 views a face, not the shipped model's 12)": ["--no_crops"],
    "retinaface, frame at 320 px, every frame": ["--detect_width", "320", "--detect_every", "1"],
    "haar (frame at 320 px)": ["--detector", "haar", "--detect_every", "1"],
    "ssd": ["--detector", "ssd", "--detect_every", "1"],
}
BASELINE = "retinaface, detector on every frame (whole 640 px frame)"


def read_rows(path: str) -> dict[int, dict]:
    """The first face of each frame of a predict CSV, by frame number."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["face"] == "0"]
    return {int(r["frame"]): r for r in rows}


def carried_agreement(baseline: dict[int, dict], run: dict[int, dict]) -> dict:
    """The faces a run carried along their tracks, against the detector's own in those frames."""
    from amobilenet_jax.predict.tracking import iou

    ious, same = [], []
    for frame, row in run.items():
        if row["detector_score"] or frame not in baseline:
            continue
        box = [float(row[k]) for k in "xywh"]
        ious.append(iou(box, [float(baseline[frame][k]) for k in "xywh"]))
        same.append(row["label"] == baseline[frame]["label"])
    if not ious:
        return {"carried_faces": 0}
    return {
        "carried_faces": len(ious),
        "iou_with_detected_median": round(float(sorted(ious)[len(ious) // 2]), 3),
        "iou_with_detected_min": round(min(ious), 3),
        "same_label_share": round(sum(same) / len(same), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default=os.path.join("experiments", "faces", "predict_speed_cpu.json"))
    parser.add_argument("--pair_with", metavar="SRC", help="another checkout's code, timed beside this one")
    parser.add_argument("--pairs", type=int, default=9, help="--pair_with: pairs of runs")
    args = parser.parse_args()
    if args.pair_with:
        return pairs(args)
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "astronaut_640x480.mp4")
        frames = make_video(video, args.seconds)
        predict = [sys.executable, "-m", "amobilenet_jax.predict", "--no_progress", video]
        cache = os.path.join(tmp, "xla_cache")
        run([*predict, "--out", os.path.join(tmp, "warm_up")], cache)  # compiles; not reported
        rows, tables = {}, {}
        for name, flags in DETECTORS.items():
            table = os.path.join(tmp, f"run{len(rows)}.csv")
            rows[name] = run([*predict, *flags, "--out", os.path.join(tmp, "out"), "--csv", table], cache)
            rows[name]["command"] = rows[name]["command"].replace(tmp + os.sep, "").replace(sys.executable, "python")
            tables[name] = read_rows(table)
            if name != BASELINE and flags[:1] in ([], ["--detect_every"]):
                rows[name].update(carried_agreement(tables[BASELINE], tables[name]))
            print(name, json.dumps(rows[name]), flush=True)
    result = {
        "what": "predict end to end per detector: decode, detect, crop, classify (the shipped model), write",
        "machine": machine(),
        "video": f"{frames} frames, 640x480, 25 frames/s, mp4v, one face per frame",
        "goal": ">= 30 frames/s",
        "runs": rows,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


def pairs(args) -> None:
    """The default command with another checkout's code and with this one, in turn."""
    codes = {"there": args.pair_with, "here": None}
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "clip.mp4")
        frames = make_video(video, args.seconds)
        predict = [sys.executable, "-m", "amobilenet_jax.predict", "--no_progress", video]
        cache = os.path.join(tmp, "xla_cache")
        for env in codes.values():
            run(predict, cache, env)  # compiles, and warms each code's imports; not reported
        fps: dict[str, list[float]] = {code: [] for code in codes}
        for i in range(args.pairs):
            for code in list(codes)[:: 1 if i % 2 == 0 else -1]:
                fps[code].append(run(predict, cache, codes[code])["frames_per_s"])
            print(f"pair {i + 1}: there {fps['there'][-1]} / here {fps['here'][-1]} frames/s", flush=True)
    ahead = [h - t for t, h in zip(fps["there"], fps["here"])]
    result = {
        "what": "predict's default command on the 640x480 one-face video, frames/s from its summary line, "
        "another checkout's code ('there') and this one ('here') in turn",
        "machine": machine(),
        "video": f"{frames} frames, 640x480, 25 frames/s, mp4v, one face per frame",
        "command": "python -m amobilenet_jax.predict clip.mp4",
        "there": checkout_commit(args.pair_with),
        "here": checkout_commit(),
        "frames_per_s": fps,
        "here_ahead_in_pairs": sum(d > 0 for d in ahead),
        "median_pair_difference": sorted(ahead)[len(ahead) // 2],
        "goal": ">= 30 frames/s",
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
