"""Expressions of every face in photos, folders, videos or a camera: one JSON line per face.

    python -m amobilenet_jax.predict photo.jpg                  # the shipped FERPlus model
    python -m amobilenet_jax.predict --workdir runs/x photos/ clip.mp4 --out annotated/ --csv faces.csv
    python -m amobilenet_jax.predict --weights model/weights.msgpack --every 5 clip.mp4
    python -m amobilenet_jax.predict --onnx model.onnx photo.jpg   # the same pipeline on ONNX Runtime
    python -m amobilenet_jax.predict --camera 0 --playlist_dir music/ --play

Each face prints one JSON line on stdout::

    {"file": "photo.jpg", "frame": null, "time_s": null, "face": 0, "box": [x, y, w, h],
     "score": 0.93, "label": "happiness", "probabilities": {"neutral": 0.01, ...}, "detector_score": 5.8}

``box`` is in the input's own pixels; ``score`` is the probability of ``label``; ``frame``
and ``time_s`` number video and camera frames (null for a photo). An input or frame with no
face prints one line with ``"face": null`` and ``"message": "no face found"``; a file that
cannot be read prints one line with ``"error"`` and the rest goes on. ``--csv`` writes the
same records as a table, ``--out`` annotated copies (box, label, confidence) of the images
and videos. Folders are searched recursively. Progress and a closing summary go to stderr.

Faces are found by OpenCV's Haar cascade and cropped as the training data was (``faces``);
all faces of a batch of frames are classified in one compiled call.

Mood player (the paper's demo): ``--playlist_dir DIR`` holds one folder of tracks per
expression, named as the model's classes (``DIR/happiness/``, ``DIR/sadness/``, ...). The
expression averaged over the last ``--mood_window_s`` seconds of a video or the camera picks
the folder; each time that mood changes, the next track of its folder is printed as a JSON
line ``{"mood": ..., "time_s": ..., "track": ...}``, and ``--play`` opens it with the
system's player.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np

from amobilenet_jax import files

# Face detection time grows with the pixels searched: video frames are searched at a width
# that keeps a 640x480 stream above real time on 2 cores (experiments/use/predict_speed_cpu.json),
# photos at one that keeps the faces of a group photo.
PHOTO_DETECT_WIDTH, VIDEO_DETECT_WIDTH = 640, 320
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


# ---------------------------------------------------------------------------- inputs


class Frame:
    """One image to look at: where it came from, and the RGB pixels."""

    __slots__ = ("source", "frame", "time_s", "rgb", "out_key")

    def __init__(self, source: str, frame: int | None, time_s: float | None, rgb: np.ndarray, out_key: str):
        self.source, self.frame, self.time_s, self.rgb, self.out_key = source, frame, time_s, rgb, out_key


def expand_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """``(path, name under --out)`` for each file named or found (recursively, sorted) in a folder."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            base = os.path.basename(os.path.normpath(item))
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    path = os.path.join(root, name)
                    found.append((path, os.path.join(base, os.path.relpath(path, item))))
        else:
            found.append((item, os.path.basename(item)))
    return found


def is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def read_image(path: str) -> np.ndarray:
    """RGB uint8 (H, W, 3), upright as the camera's EXIF orientation says. Raises ValueError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.exists(path):
        raise ValueError("no such file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(
            f"not a readable image or video ({type(e).__name__}: {' '.join(str(e).split())[:120]})"
        ) from None


def open_video(source) -> tuple:
    """``(capture, fps, frame_count)``; raises ValueError when OpenCV cannot open it."""
    import cv2

    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else "video"
        raise ValueError(f"cannot open the {what}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return capture, (fps if fps > 0 else 25.0), max(count, 0)


def video_frames(capture, fps: float, source: str, out_key: str, every: int, camera: bool) -> Iterator[Frame]:
    import cv2

    start = time.perf_counter()
    index = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            return
        if index % every == 0:
            time_s = time.perf_counter() - start if camera else index / fps
            yield Frame(source, index, round(time_s, 3), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), out_key)
        index += 1


# ---------------------------------------------------------------------------- outputs


def face_record(frame: Frame, index: int, face, probabilities: np.ndarray, class_names) -> dict:
    top = int(np.argmax(probabilities))
    return {
        "file": frame.source,
        "frame": frame.frame,
        "time_s": frame.time_s,
        "face": index,
        "box": [int(v) for v in face.box],
        "score": round(float(probabilities[top]), 4),
        "label": class_names[top],
        "probabilities": {name: round(float(p), 4) for name, p in zip(class_names, probabilities)},
        "detector_score": round(face.detector_score, 3),
    }


def no_face_record(frame: Frame) -> dict:
    return {
        "file": frame.source,
        "frame": frame.frame,
        "time_s": frame.time_s,
        "face": None,
        "message": "no face found",
    }


def error_record(path: str, why: str) -> dict:
    return {"file": path, "error": why}


class CsvSink:
    """The records as CSV, written to a temporary file and renamed into place at the end."""

    def __init__(self, path: str, class_names):
        self.path = path
        self.columns = ["file", "frame", "time_s", "face", "x", "y", "w", "h", "score", "label", "detector_score"]
        self.columns += [f"p_{name}" for name in class_names] + ["message", "error"]
        self.output = files.AtomicOutput(path)
        self.file = open(self.output.tmp, "w", newline="")  # noqa: SIM115 - closed in close()
        self.writer = csv.DictWriter(self.file, self.columns, extrasaction="ignore")
        self.writer.writeheader()

    def write(self, record: dict) -> None:
        row = {k: v for k, v in record.items() if k not in ("box", "probabilities")}
        if "box" in record:
            row.update(zip("xywh", record["box"]))
        for name, p in record.get("probabilities", {}).items():
            row[f"p_{name}"] = p
        self.writer.writerow(row)

    def close(self, keep: bool) -> None:
        self.file.close()
        self.output.commit() if keep else self.output.discard()


def annotate(rgb: np.ndarray, records: list[dict]) -> np.ndarray:
    """A BGR copy of the frame with each face's box, label and confidence drawn on it."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(rgb.shape[:2]) / 400))
    for r in records:
        if r.get("box") is None:
            continue
        x, y, w, h = r["box"]
        cv2.rectangle(bgr, (x, y), (x + w, y + h), (0, 220, 0), thickness)
        text = f"{r['label']} {r['score']:.2f}"
        scale = max(0.4, w / 250)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y - th - base - 2 if y - th - base - 2 >= 0 else y + h
        cv2.rectangle(bgr, (x, top), (x + tw + 2, top + th + base + 2), (0, 220, 0), -1)
        cv2.putText(
            bgr, text, (x + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA
        )
    return bgr


def write_atomic_image(path: str, bgr: np.ndarray) -> None:
    import cv2

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"):
        path, ext = path + ".png", ".png"
    ok, data = cv2.imencode(ext, bgr)
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode {ext}")
    files.write_atomic(path, data.tobytes())


class VideoSink:
    """An annotated video written beside its name under --out (mp4v), renamed into place when complete."""

    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        import cv2

        self.path = os.path.splitext(path)[0] + ".mp4"
        self.output = files.AtomicOutput(self.path)
        self.writer = cv2.VideoWriter(self.output.tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            self.output.discard()
            raise ValueError(f"{self.path}: OpenCV cannot write an mp4v video here")

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)

    def close(self, keep: bool) -> None:
        self.writer.release()
        self.output.commit() if keep else self.output.discard()


# ---------------------------------------------------------------------------- mood player


class MoodPlayer:
    """The expression smoothed over a time window picks a track from ``DIR/<expression>/``."""

    def __init__(self, playlist_dir: str, class_names, window_s: float = 3.0, play: bool = False, emit=print):
        if not os.path.isdir(playlist_dir):
            raise ValueError(f"{playlist_dir}: no such playlist folder (it holds one folder per expression)")
        self.class_names = tuple(class_names)
        self.window_s = float(window_s)
        self.play = play
        self.emit = emit
        self.tracks = {}
        for name in self.class_names:
            folder = os.path.join(playlist_dir, name)
            files = sorted(f for f in os.listdir(folder) if not f.startswith(".")) if os.path.isdir(folder) else []
            self.tracks[name] = [os.path.join(folder, f) for f in files if os.path.isfile(os.path.join(folder, f))]
        if not any(self.tracks.values()):
            raise ValueError(
                f"{playlist_dir}: no tracks in any of {', '.join(n + '/' for n in self.class_names)} "
                "(one folder per expression)"
            )
        self.history = collections.deque()  # (time_s, mean probabilities of the frame's faces)
        self.mood = None
        self.next_track = dict.fromkeys(self.class_names, 0)
        self.player = shutil.which("xdg-open") or shutil.which("open")

    def update(self, time_s: float, probabilities: list[np.ndarray]) -> str | None:
        """Adds a frame; returns the new mood when the smoothed expression changed, else None."""
        if not probabilities:
            return None
        self.history.append((time_s, np.mean(probabilities, axis=0)))
        while self.history and self.history[0][0] < time_s - self.window_s:
            self.history.popleft()
        mood = self.class_names[int(np.argmax(np.mean([p for _, p in self.history], axis=0)))]
        if mood == self.mood:
            return None
        self.mood = mood
        tracks = self.tracks[mood]
        track = tracks[self.next_track[mood] % len(tracks)] if tracks else None
        self.next_track[mood] += 1
        record = {"mood": mood, "time_s": time_s, "track": track}
        if track is None:
            record["message"] = f"no tracks in {mood}/"
        self.emit(record)
        if track and self.play:
            self._open(track)
        return mood

    def _open(self, track: str) -> None:
        if sys.platform.startswith("win"):
            os.startfile(track)  # noqa: S606 - the user's own file, with the system's player
        elif self.player:
            subprocess.Popen([self.player, track], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            print("predict: --play found no system player (xdg-open or open); printing tracks only", file=sys.stderr)
            self.play = False


# ---------------------------------------------------------------------------- the pipeline


class Predictor:
    """Detects, crops and classifies the faces of batches of frames; emits the records."""

    def __init__(self, model, detector, margin: float, emit, csv_sink=None, mood=None):
        self.model, self.detector, self.margin = model, detector, margin
        self.emit_record = emit
        self.csv = csv_sink
        self.mood = mood
        self.frames = self.faces = 0

    def emit(self, record: dict) -> None:
        self.emit_record(record)
        if self.csv is not None:
            self.csv.write(record)

    def run_batch(self, frames: list[Frame]) -> list[list[dict]]:
        """Records per frame, in order; all faces of the batch go through the model in one call."""
        from amobilenet_jax import faces as faces_lib

        found = [self.detector.detect(f.rgb) for f in frames]
        crops = [
            faces_lib.crop(f.rgb, face.box, self.model.native_shape, self.margin)
            for f, fs in zip(frames, found)
            for face in fs
        ]
        probabilities = self.model.probabilities(np.stack(crops)) if crops else np.zeros((0, 0))
        out, k = [], 0
        for frame, faces in zip(frames, found):
            records = []
            for i, face in enumerate(faces):
                records.append(face_record(frame, i, face, probabilities[k], self.model.class_names))
                k += 1
            for record in records or [no_face_record(frame)]:
                self.emit(record)
            if self.mood is not None and frame.time_s is not None:
                self.mood.update(frame.time_s, [probabilities[k - len(faces) + i] for i in range(len(faces))])
            self.frames += 1
            self.faces += len(faces)
            out.append(records)
        return out


def _progress(total: int | None, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=not enabled, mininterval=0.5, dynamic_ncols=True)


def run(args) -> int:
    """Runs predict; returns the exit status (1 when nothing could be read)."""
    from amobilenet_jax import faces as faces_lib

    started = time.perf_counter()
    model = load(args)
    detector = faces_lib.FaceDetector(min_face=args.min_face, detect_width=args.detect_width)
    if hasattr(model, "warm_up"):
        model.warm_up((1,) if args.camera is not None and not args.inputs else (1, min(args.batch_frames, 16)))
    print(
        f"predict: model {model.source} ({len(model.class_names)} classes: {', '.join(model.class_names)}); "
        f"faces by OpenCV's Haar cascade, cropped with margin {args.margin} "
        f"to {model.native_shape[0]}x{model.native_shape[1]}; "
        f"ready in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    emit = (lambda r: print(json.dumps(r), flush=True)) if not args.quiet_json else (lambda r: None)
    csv_sink = CsvSink(args.csv, model.class_names) if args.csv else None
    mood = (
        MoodPlayer(args.playlist_dir, model.class_names, args.mood_window_s, args.play, emit)
        if args.playlist_dir
        else None
    )
    predictor = Predictor(model, detector, args.margin, emit, csv_sink, mood)
    failures = 0
    start = time.perf_counter()
    completed = False
    try:
        files = expand_inputs(args.inputs)
        images = [(p, key) for p, key in files if not is_video(p)]
        videos = [(p, key) for p, key in files if is_video(p)]
        if images:
            failures += _run_images(predictor, images, args)
        for path, key in videos:
            failures += _run_video(predictor, path, key, args, camera=False)
        if args.camera is not None:
            failures += _run_video(predictor, args.camera, f"camera{args.camera}", args, camera=True)
        completed = True
    except KeyboardInterrupt:
        completed = args.camera is not None  # stopping the camera is the normal end
        if not completed:
            raise
    finally:
        if csv_sink is not None:
            csv_sink.close(keep=completed)
    elapsed = time.perf_counter() - start
    rate = predictor.frames / elapsed if elapsed > 0 else 0.0
    print(
        f"predict: {predictor.frames} images/frames, {predictor.faces} faces, {failures} unreadable, "
        f"{elapsed:.1f} s ({rate:.1f} frames/s)"
        + (f"; table in {args.csv}" if args.csv else "")
        + (f"; annotated copies in {args.out}" if args.out else ""),
        file=sys.stderr,
        flush=True,
    )
    return 1 if predictor.frames == 0 else 0  # unreadable inputs printed their own lines


def _run_images(predictor: Predictor, images: list[tuple[str, str]], args) -> int:
    predictor.detector.detect_width = args.detect_width or PHOTO_DETECT_WIDTH
    failures = 0
    bar = _progress(len(images), "img", len(images) > 1 and not args.no_progress)
    batch: list[Frame] = []

    def flush():
        for frame, records in zip(batch, predictor.run_batch(batch)):
            if args.out:
                write_atomic_image(os.path.join(args.out, frame.out_key), annotate(frame.rgb, records))
        bar.update(len(batch))
        batch.clear()

    for path, key in images:
        try:
            rgb = read_image(path)
        except ValueError as e:
            predictor.emit(error_record(path, str(e)))
            failures += 1
            bar.update(1)
            continue
        batch.append(Frame(path, None, None, rgb, key))
        if len(batch) >= args.batch_frames:
            flush()
    if batch:
        flush()
    bar.close()
    return failures


def _run_video(predictor: Predictor, source, key: str, args, camera: bool) -> int:
    predictor.detector.detect_width = args.detect_width or VIDEO_DETECT_WIDTH
    name = f"camera:{source}" if camera else source
    try:
        capture, fps, count = open_video(source)
    except ValueError as e:
        predictor.emit(error_record(name, str(e)))
        return 1
    sink = None
    total = -(-count // args.every) if count else None
    bar = _progress(total, "frame", not args.no_progress)
    done = False
    try:
        batch: list[Frame] = []
        for frame in video_frames(capture, fps, name, key, args.every, camera):
            if sink is None and args.out:
                height, width = frame.rgb.shape[:2]
                sink = VideoSink(os.path.join(args.out, key), fps / args.every, (width, height))
            batch.append(frame)
            if len(batch) >= (1 if camera else args.batch_frames):
                _flush_video(predictor, batch, sink, bar)
        if batch:
            _flush_video(predictor, batch, sink, bar)
        done = True
    finally:
        capture.release()
        bar.close()
        if sink is not None:
            sink.close(keep=done)
    return 0


def _flush_video(predictor: Predictor, batch: list[Frame], sink, bar) -> None:
    for frame, records in zip(batch, predictor.run_batch(batch)):
        if sink is not None:
            sink.write(annotate(frame.rgb, records))
    bar.update(len(batch))
    batch.clear()


def load(args):
    from amobilenet_jax import inference

    if args.onnx:
        if args.workdir or args.weights:
            raise ValueError("give --onnx, or --workdir/--weights, not both")
        from amobilenet_jax.export import OnnxModel

        return OnnxModel(args.onnx)
    return inference.load_model(workdir=args.workdir, weights=args.weights)


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        prog="python -m amobilenet_jax.predict",
        description="Facial expressions of every face in images, folders, videos or a camera (one JSON line per face).",
    )
    parser.add_argument("inputs", nargs="*", help="image files, folders (searched recursively) and video files")
    which = parser.add_argument_group("model (default: the shipped FERPlus model)")
    which.add_argument("--workdir", help="a run directory (its weights.msgpack, else its newest checkpoint)")
    which.add_argument("--weights", help="a weights file with its config.json beside it")
    which.add_argument("--onnx", help="an ONNX file written by amobilenet_jax.export, run on ONNX Runtime")
    parser.add_argument("--camera", type=int, default=None, metavar="N", help="read camera N until Ctrl-C")
    parser.add_argument("--csv", help="also write the records to this CSV file")
    parser.add_argument("--out", help="write annotated images and videos into this folder")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="look at every Nth video frame")
    parser.add_argument("--batch_frames", type=int, default=16, help="frames classified together in one call")
    parser.add_argument("--min_face", type=int, default=40, help="smallest face side kept, in pixels")
    parser.add_argument(
        "--detect_width",
        type=int,
        default=0,
        help=f"shrink frames to this width to find faces "
        f"(default {PHOTO_DETECT_WIDTH} for photos, {VIDEO_DETECT_WIDTH} for video)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="grow the face box by this much of its side (0 matches FER+ crops best)",
    )
    parser.add_argument("--playlist_dir", help="mood player: DIR/<expression>/ holds the tracks for each expression")
    parser.add_argument(
        "--mood_window_s", type=float, default=3.0, help="mood player: seconds the expression is averaged over"
    )
    parser.add_argument(
        "--play", action="store_true", help="mood player: open each chosen track with the system's player"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--quiet_json", action="store_true", help=argparse.SUPPRESS)  # benchmarks: no stdout records
    args = parser.parse_args(argv)
    if not args.inputs and args.camera is None:
        parser.error("name at least one image, folder or video, or --camera N")
    if args.every < 1 or args.batch_frames < 1 or args.min_face < 1 or args.detect_width < 0:
        parser.error("--every, --batch_frames and --min_face must be positive, --detect_width >= 0")
    if args.margin < 0 or args.mood_window_s <= 0:
        parser.error("--margin must be >= 0 and --mood_window_s > 0")
    if args.play and not args.playlist_dir:
        parser.error("--play needs --playlist_dir")
    return args


def main(argv: list[str] | None = None) -> None:
    from amobilenet_jax.inference import command_main

    command_main("predict", parse_args, run, argv)


if __name__ == "__main__":
    main()
