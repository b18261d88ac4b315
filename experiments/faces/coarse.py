"""``--small_faces`` with its enlarged pass and second looks on RetinaFace's coarse graph
(``faces.coarse_graph``: no stride-8 level) against the whole graph, on the hard set.

Both detectors are ``faces.RetinaFaceDetector(small_faces=True)`` at predict's settings (threshold
0.8, min face 40); the whole-graph one runs every pass on the whole graph, as ``--small_faces`` did
before. Per frame (face frames, then face-free) both run, in alternating order, so that the VM's
drift falls on both alike; the boxes are compared one to one and scored as the study scores them:
found (IoU >= 0.4 with the pasted face's upright square), found of the faces of 56 px and more,
false boxes per 100 face-free frames, and milliseconds a frame (detection alone).

    python experiments/faces/coarse.py --data_dir DATA --cache_dir CACHE --num_faces 1600
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import detectors  # noqa: E402
import hard  # noqa: E402
import study  # noqa: E402


def whole_graph_detector():
    """``--small_faces`` as it was: every pass on the whole graph."""
    from amobilenet_jax import faces

    class WholeGraph(faces.RetinaFaceDetector):
        def _run(self, rgb, scale, threshold, min_face, coarse=False):
            return super()._run(rgb, scale, threshold, min_face, coarse=False)

    return WholeGraph(small_faces=True)


def same_boxes(a: list, b: list) -> bool:
    """The same number of faces, each of ``a`` matched by one of ``b`` at IoU > 0.9."""
    if len(a) != len(b):
        return False
    return all(max((hard.iou(f.box, g.box) for g in b), default=0.0) > 0.9 for f in a)


def score(found: list, data: dict) -> dict:
    frames, faces = data["frames"], data["faces"]
    hit = np.array([m is not None for m in hard.match_faces(found, faces)[0]])
    goal = np.array([f["size"] >= hard.GOAL_SIZE for f in faces])
    empty = found[len(frames) :]
    return {
        "found": float(hit.mean()),
        "found_at_least_56px": float(hit[goal].mean()),
        "false_boxes_per_100_empty_frames": 100 * sum(len(f) for f in empty) / len(empty),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--cache_dir", default="")
    parser.add_argument("--num_faces", type=int, default=1600)
    parser.add_argument("--face_free", type=int, default=hard.HARD_FACE_FREE)
    parser.add_argument("--out", default="experiments/faces/coarse_cpu.json")
    args = parser.parse_args()
    from amobilenet_jax import faces, runtime

    runtime.configure()
    from amobilenet_jax.data import load_dataset
    from amobilenet_jax.files import write_json_atomic
    from amobilenet_jax.inference import load_model

    config = load_model().config.data.copy_and_resolve_references()
    with config.unlocked():
        config.dir, config.cache_dir = args.data_dir, args.cache_dir
    valid = load_dataset(config, splits=("valid",)).split("valid")
    data = hard.hard_set(valid.images, min(args.num_faces, len(valid.labels)), detectors.backgrounds(), args.face_free)
    frames = data["frames"] + data["empty"]
    pair = {"whole": whole_graph_detector(), "coarse": faces.RetinaFaceDetector(small_faces=True)}
    for detector in pair.values():  # sessions made and warmed before timing
        detector.detect(frames[0])
    found = {k: [] for k in pair}
    ms = {k: [] for k in pair}
    for i, frame in enumerate(frames):
        for name in ("whole", "coarse") if i % 2 == 0 else ("coarse", "whole"):
            started = time.perf_counter()
            found[name].append(pair[name].detect(frame))
            ms[name].append(1000 * (time.perf_counter() - started))
        if (i + 1) % 200 == 0:
            print(f"{i + 1}/{len(frames)} frames", flush=True)
    same = [same_boxes(a, b) for a, b in zip(found["whole"], found["coarse"])]
    rows = {
        name: {
            **score(found[name], data),
            "ms_per_frame_median": float(np.median(ms[name])),
            "ms_per_frame_mean": float(np.mean(ms[name])),
        }  # fmt: skip
        for name in pair
    }
    for name, row in rows.items():
        print(f"{name}: found {100 * row['found']:.1f}%, >= 56 px {100 * row['found_at_least_56px']:.1f}%, "
              f"{row['false_boxes_per_100_empty_frames']:.1f} false boxes / 100 face-free, "
              f"{row['ms_per_frame_median']:.0f} ms a frame (median), "
              f"{row['ms_per_frame_mean']:.0f} (mean)")  # fmt: skip
    print(f"same boxes on {sum(same)} of {len(same)} frames")
    write_json_atomic(args.out, {
        "question": "--small_faces with its enlarged pass and second looks on RetinaFace's coarse graph (no "
        "stride-8 level) against the whole graph: the same faces, and how much faster",
        "faces": len(data["faces"]), "face_frames": len(data["frames"]), "face_free_frames": len(data["empty"]),
        "frames_with_the_same_boxes": int(sum(same)), "rows": rows,
        "command": study.command_line(sys.argv), "machine": runtime.machine(),
    })  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
