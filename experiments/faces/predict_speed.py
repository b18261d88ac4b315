"""``predict`` end to end on a 640x480 video with one face, with each face detector.

    python experiments/faces/predict_speed.py [--seconds 10] [--out experiments/faces/predict_speed_cpu.json]

The video is ``experiments/use/predict_speed.py``'s (the astronaut's head drifting and scaling
across a plain background, mp4v, 25 frames/s). Each run is the real command (a subprocess:
decode, detect, crop, classify, write the annotated copy); frames/s come from predict's own
summary line, which leaves out start-up. A first run fills the compilation cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "use"))

from crop_margin import machine  # noqa: E402
from predict_speed import make_video, run  # noqa: E402

DETECTORS = {
    "haar (default, frame searched at 320 px)": ["--detector", "haar"],
    "ssd": ["--detector", "ssd"],
    "retinaface, frame at 320 px": ["--detector", "retinaface"],
    "retinaface, frame at 640 px": ["--detector", "retinaface", "--detect_width", "640"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default=os.path.join("experiments", "faces", "predict_speed_cpu.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "astronaut_640x480.mp4")
        frames = make_video(video, args.seconds)
        predict = [sys.executable, "-m", "amobilenet_jax.predict", "--no_progress", video]
        cache = os.path.join(tmp, "xla_cache")
        run([*predict, "--out", os.path.join(tmp, "warm_up")], cache)  # compiles; not reported
        rows = {}
        for name, flags in DETECTORS.items():
            rows[name] = run([*predict, *flags, "--out", os.path.join(tmp, "out")], cache)
            rows[name]["command"] = rows[name]["command"].replace(tmp + os.sep, "").replace(sys.executable, "python")
            print(name, rows[name]["frames_per_s"], "frames/s", rows[name]["faces"], "faces", flush=True)
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


if __name__ == "__main__":
    main()
