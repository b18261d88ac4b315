"""``predict`` on a folder of 640x480 photos with one face each: photos per second (issue 36's goal: >= 20).

    python experiments/faces/photo_speed.py [--photos 64] [--repeats 3] [--out experiments/faces/photo_speed_cpu.json]

The photos are frames of ``experiments/use/predict_speed.py``'s video (the astronaut's head and
shoulders on a plain background, drifting and scaling), saved as JPEG. Each run is the real
command (a subprocess: read, detect, crop, classify; nothing written), first one run to fill the
compilation cache, then ``--repeats`` counted runs per setting, the settings in turn; photos/s is
predict's own count over its processing time (start-up left out).

``--pair_with SRC`` times the code in another checkout (SRC: its package, run from there)
beside this one: each setting runs there and here in turn, the order swapped every repeat, so
that the VM's drift falls on both alike; its rows go under ``paired_with``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "use"))

from predict_speed import checkout_commit, make_video, run  # noqa: E402

from amobilenet_jax.runtime import machine  # noqa: E402

SETTINGS = {
    "default (retinaface at 640 px, 12 views, eyes and light levelled)": [],
    "--no_levels": ["--no_levels"],
    "--no_crops (2 views a face)": ["--no_crops"],
    "--small_faces (a second pass at twice the size, second looks)": ["--small_faces"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="experiments/faces/photo_speed_cpu.json")
    parser.add_argument("--pair_with", metavar="SRC", help="another checkout's code, timed beside this one")
    args = parser.parse_args()
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "clip.mp4")
        make_video(video, args.photos / 25.0)
        folder = os.path.join(tmp, "photos")
        os.makedirs(folder)
        capture = cv2.VideoCapture(video)
        for i in range(args.photos):
            ok, frame = capture.read()
            if not ok:
                raise SystemExit(f"{video}: frame {i} could not be read")
            cv2.imwrite(os.path.join(folder, f"photo_{i:03d}.jpg"), frame)
        capture.release()
        predict = [sys.executable, "-m", "amobilenet_jax.predict", "--no_progress", folder]
        cache = os.path.join(tmp, "xla_cache")
        run(predict, cache)  # fills the compilation cache
        codes = {"here": None}
        if args.pair_with:
            codes["there"] = args.pair_with
            run(predict, cache, codes["there"])
        runs = {code: {name: [] for name in SETTINGS} for code in codes}
        for repeat in range(args.repeats):
            for name, flags in SETTINGS.items():
                for code in list(codes)[:: 1 if repeat % 2 == 0 else -1]:
                    runs[code][name].append(run([*predict, *flags], cache, codes[code]))
                    print(code if args.pair_with else "", name, runs[code][name][-1]["frames_per_s"], "photos/s",
                          flush=True)  # fmt: skip
        for rows in (row for by_name in runs.values() for row in by_name.values()):
            for row in rows:
                row["command"] = row["command"].replace(tmp + os.sep, "").replace(sys.executable, "python")
    result = {
        "what": "predict on a folder of 640x480 JPEG photos, one face each (read, detect, crop, classify)",
        "machine": machine(),
        "photos": args.photos,
        "goal": ">= 20 photos/s with the default command",
        "photos_per_s": {name: sorted(r["frames_per_s"] for r in rows) for name, rows in runs["here"].items()},
        "runs": runs["here"],
    }
    if args.pair_with:
        result["paired_with"] = {
            "code": f"{checkout_commit(args.pair_with)}, timed in turn with this run's code ({checkout_commit()})",
            "photos_per_s": {name: sorted(r["frames_per_s"] for r in rows) for name, rows in runs["there"].items()},
            "runs": runs["there"],
        }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
