"""End-to-end speed of ``predict`` on a 640x480 video with one face per frame, and on a folder of photos.

    python experiments/use/predict_speed.py [--seconds 10] [--out experiments/use/predict_speed_cpu.json]

The video is made here from scikit-image's astronaut photo (one face, moved across the frame
and scaled over time) and written with OpenCV's mp4v codec at 25 frames/s; the folder holds
the same photo 64 times. Each run is the real command as a user runs it (a subprocess,
annotated output written with --out), timed from start to exit and by predict's own summary
line (which leaves out start-up: loading the model and compiling). The first run starts from
an empty compilation cache, the others reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np


def face_photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # RGB 512x512, one face at about (176, 65, 96, 96)


def make_video(path: str, seconds: float, fps: float = 25.0, size=(640, 480)) -> int:
    """A video of the astronaut's head and shoulders drifting across a plain background."""
    import cv2

    photo = face_photo()[20:300, 100:360]  # head and shoulders, 280x260
    width, height = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    frames = int(round(seconds * fps))
    for i in range(frames):
        t = i / max(frames - 1, 1)
        scale = 0.8 + 0.4 * np.sin(np.pi * t)
        patch = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((height, width, 3), 90, np.uint8)
        x = int((width - patch.shape[1]) * t)
        y = max(0, (height - patch.shape[0]) // 2)
        h, w = min(patch.shape[0], height - y), min(patch.shape[1], width - x)
        canvas[y : y + h, x : x + w] = patch[:h, :w]
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()
    return frames


def checkout_commit(path: str = ".") -> str:
    """The short commit of the git checkout at ``path``, and whether it has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no")
    return f"commit {git('rev-parse', '--short', 'HEAD') or 'unknown'}" + (
        ", with uncommitted changes" if changed else ""
    )


def run(command: list[str], cache_dir: str, code: str | None = None) -> dict:
    """``command`` (predict) in a subprocess; ``code``: another checkout whose package it runs
    (its directory the working one, since ``python -m`` puts that first on the path)."""
    start = time.perf_counter()
    env = {**os.environ, "AMOBILENET_JAX_CACHE": cache_dir}
    if code:
        env["PYTHONPATH"] = os.path.abspath(code)
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env, cwd=code or None)
    wall = time.perf_counter() - start
    summary = [line for line in done.stderr.splitlines() if line.startswith("predict: ") and "frames/s" in line][-1]
    frames, faces = (int(v) for v in re.search(r"(\d+) images/frames, (\d+) faces", summary).groups())
    seconds = float(re.search(r", ([\d.]+) s \(", summary).group(1))
    return {
        "command": " ".join(command),
        "frames": frames,
        "faces": faces,
        "processing_s": seconds,
        "frames_per_s": round(frames / seconds, 1),
        "wall_s_with_startup": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default="experiments/use/predict_speed_cpu.json")
    args = parser.parse_args()
    from PIL import Image

    from amobilenet_jax.runtime import machine

    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "astronaut_640x480.mp4")
        frames = make_video(video, args.seconds)
        folder = os.path.join(tmp, "photos")
        os.makedirs(folder)
        for i in range(64):
            Image.fromarray(face_photo()).save(os.path.join(folder, f"astronaut_{i:02d}.jpg"))
        predict = [sys.executable, "-m", "amobilenet_jax.predict", "--no_progress"]
        cache = os.path.join(tmp, "xla_cache")  # empty for the first run: its start-up includes compiling
        rows = {
            "video_640x480_one_face": run([*predict, video, "--out", os.path.join(tmp, "out_video")], cache),
            "video_640x480_one_face_no_output": run([*predict, video], cache),
            "folder_64_photos_512x512": run([*predict, folder, "--out", os.path.join(tmp, "out_photos")], cache),
        }
        rows["video_640x480_one_face"]["compilation_cache"] = "empty (start-up includes compiling)"
        for key in ("video_640x480_one_face_no_output", "folder_64_photos_512x512"):
            rows[key]["compilation_cache"] = "warm (filled by the first run)"
    for row in rows.values():
        row["command"] = row["command"].replace(tmp + os.sep, "").replace(sys.executable, "python")
    result = {
        "what": "predict end to end: decode, detect (Haar cascade), crop, classify "
        "(the shipped model, test-time flip), write",
        "machine": machine(),
        "video": f"{frames} frames, 640x480, 25 frames/s, mp4v, one face per frame (made by this script)",
        "goal": "faster than real time: >= 25 frames/s with one face per frame",
        "runs": rows,
    }
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
