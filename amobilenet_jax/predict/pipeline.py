"""predict's pipeline: frames in, faces found, cropped and classified in batches, records out."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from amobilenet_jax.predict.media import Frame, expand_inputs, is_video, open_video, read_image, video_frames
from amobilenet_jax.predict.mood import MoodPlayer
from amobilenet_jax.predict.sinks import (
    CsvSink,
    VideoSink,
    annotate,
    error_record,
    face_record,
    no_face_record,
    write_atomic_image,
)

# Face detection time grows with the pixels searched. Photos are searched at a width that keeps
# the faces of a group photo; video frames at one per detector: the Haar cascade at 320 px, fast
# enough for real time; RetinaFace on the whole frame, as a smaller one misses small faces
# (experiments/use/ and experiments/faces/). The SSD always looks at 300 x 300.
PHOTO_DETECT_WIDTH = 640
VIDEO_DETECT_WIDTH = {"haar": 320, "ssd": 0, "retinaface": 640}
# Video: once it has found a face, the detector runs on every DETECT_EVERY-th frame looked at, and
# the faces between move along their tracks (while no face is tracked it runs on every frame);
# speed and agreement measured in experiments/faces/README.md.
DETECT_EVERY = 3
# Video: a tracked face the detector misses (a small or poor face's score flickers about the
# threshold) is kept for up to HOLD_S seconds, moved along its track (--hold_s; at most a track's
# own life, MAX_HOLD_S, tracking.Tracker's max_gap_s); measured in experiments/faces/README.md.
HOLD_S = 0.5
MAX_HOLD_S = 1.0
# A face found with landmarks (RetinaFace) is turned so that its eyes are level before it is cut
# out, which helps most on tilted faces (experiments/faces/README.md). --no_align turns it off.
ALIGN = True
# A dim, flat or blurred face crop has its light and detail levelled to the range of the training
# faces (faces.level); --no_levels turns it off.
LEVELS = True


def _centre_inside(box, width: int, height: int) -> bool:
    x, y, w, h = box
    return 0 <= x + w / 2 < width and 0 <= y + h / 2 < height


class Predictor:
    """Detects, crops and classifies the faces of batches of frames; emits the records."""

    def __init__(
        self,
        model,
        detector,
        margin: float,
        emit,
        csv_sink=None,
        mood=None,
        detect_every: int = 1,
        align: bool = ALIGN,
        levels: bool = LEVELS,
    ):
        self.model, self.detector, self.margin, self.align = model, detector, margin, bool(align)
        self.levels = bool(levels)
        self.detect_every = int(detect_every)  # video: the detector looks at every Nth frame
        from amobilenet_jax.faces import CROP_GEOMETRY

        self.geometry = CROP_GEOMETRY.get(getattr(detector, "name", ""))  # its box -> a FER+ crop
        self._since_detection = 0
        self.emit_record = emit
        self.csv = csv_sink
        self.mood = mood
        self.tracker = None  # a video's (tracking.Tracker): face ids across frames, smoothing
        self._detected: dict[int, object] = {}  # track id -> its face at its last detection (for landmarks)
        self.frames = self.faces = 0

    def emit(self, record: dict) -> None:
        self.emit_record(record)
        if self.csv is not None:
            self.csv.write(record)

    def _carry(self, track: int, box):
        """A face carried along its track: its box moved on, its last landmarks moved with it."""
        from amobilenet_jax import faces as faces_lib

        box = tuple(int(round(v)) for v in box)
        last = self._detected.get(track)
        landmarks = None
        if last is not None and last.landmarks is not None:
            dx = box[0] + box[2] / 2 - (last.box[0] + last.box[2] / 2)
            dy = box[1] + box[3] / 2 - (last.box[1] + last.box[3] / 2)
            landmarks = tuple((x + dx, y + dy) for x, y in last.landmarks)
        return faces_lib.Face(box, None, landmarks)

    def run_batch(self, frames: list[Frame]) -> list[list[dict]]:
        """Records per frame, in order; all faces of the batch go through the model in one call."""
        found, ids, crops = self.find(frames)
        probabilities = self.model.probabilities(crops) if len(crops) else np.zeros((0, 0))
        return self.records(frames, found, ids, probabilities)

    def find(self, frames: list[Frame]) -> tuple[list, list, np.ndarray]:
        """``(faces, track ids, crops)``: each frame's faces (found, or carried along their tracks)
        and their ids (None without a tracker), and all faces cut out, uint8 ``[N, *native_shape]``."""
        found, ids = [], []
        for frame in frames:
            tracked = self.tracker is not None and frame.time_s is not None
            due = self._since_detection >= self.detect_every
            carried = self.tracker.carried(frame.time_s) if tracked and not due else []
            height, width = frame.rgb.shape[:2]
            carried = [(t, b) for t, b in carried if _centre_inside(b, width, height)]
            if carried:  # between detections: the last detected faces, moved along their tracks
                carried.sort(key=lambda c: -c[1][2] * c[1][3])
                found.append([self._carry(track, box) for track, box in carried])
                ids.append([track for track, _ in carried])
                self._since_detection += 1
            else:  # the detector looks: every Nth frame, and every frame while no face is tracked
                detected = self.detector.detect(frame.rgb)
                faces, frame_ids = self.track(frame, detected) if tracked else (detected, None)
                found.append(faces)
                ids.append(frame_ids)
                self._since_detection = 1
        return found, ids, self.crops(frames, found)

    def track(self, frame: Frame, detected: list) -> tuple[list, list[int]]:
        """``(faces, track ids)``: the detector's faces in ``frame`` with the tracker's ids, then the
        faces it found lately and misses now (the tracker's ``hold_s``), carried along their tracks."""
        ids = self.tracker.update(frame.time_s, [f.box for f in detected])
        alive = {t.id for t in self.tracker.tracks}
        self._detected = {k: v for k, v in self._detected.items() if k in alive}
        self._detected.update(zip(ids, detected))
        height, width = frame.rgb.shape[:2]
        held = [(t, b) for t, b in self.tracker.held(frame.time_s) if _centre_inside(b, width, height)]
        return list(detected) + [self._carry(t, b) for t, b in held], list(ids) + [t for t, _ in held]

    def crops(self, frames: list[Frame], found: list) -> np.ndarray:
        """Every frame's faces cut out (and levelled), in order: uint8 ``[N, *native_shape]``."""
        from amobilenet_jax import faces as faces_lib

        shape, margin, geometry = self.model.native_shape, self.margin, self.geometry
        crops = [
            faces_lib.crop(f.rgb, face.box, shape, margin, geometry, face.landmarks if self.align else None)
            for f, fs in zip(frames, found)
            for face in fs
        ]
        if self.levels:
            crops = [faces_lib.level(c) for c in crops]
        return np.stack(crops) if crops else np.zeros((0, *shape), np.uint8)

    def records(self, frames: list[Frame], found: list, ids: list, probabilities: np.ndarray) -> list[list[dict]]:
        """Emits and returns the records of ``find``'s faces, given their probabilities."""
        out, k = [], 0
        for frame, faces, frame_ids in zip(frames, found, ids):
            tracked = frame_ids is not None
            records, shown = [], []
            for i, face in enumerate(faces):
                p = self.tracker.smooth(frame_ids[i], frame.time_s, probabilities[k]) if tracked else probabilities[k]
                shown.append(p)
                track = frame_ids[i] if tracked else None
                records.append(face_record(frame, i, face, p, self.model.class_names, track))
                k += 1
            for record in records or [no_face_record(frame)]:
                self.emit(record)
            if self.mood is not None and frame.time_s is not None:
                # the largest face (faces come largest first), smoothed along its track
                self.mood.update(frame.time_s, shown[:1] if tracked else shown)
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
    detector = faces_lib.make_detector(
        args.detector, min_face=args.min_face, detect_width=args.detect_width, small_faces=args.small_faces
    )
    if hasattr(model, "warm_up"):
        model.warm_up((1,) if args.camera is not None and not args.inputs else (1, min(args.batch_frames, 16)))
    print(
        f"predict: model {model.source} ({len(model.class_names)} classes: {', '.join(model.class_names)}); "
        f"faces by {faces_lib.DETECTOR_NAMES[args.detector]}, cropped with margin {args.margin} "
        f"to {model.native_shape[0]}x{model.native_shape[1]}; "
        f"ready in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    printed = (lambda r: print(json.dumps(r), flush=True)) if not args.quiet_json else (lambda r: None)
    timeline: list[dict] = []

    def emit(record: dict) -> None:
        printed(record)
        if args.timeline and record.get("face") is not None and record.get("track") is not None:
            timeline.append(record)

    csv_sink = CsvSink(args.csv, model.class_names) if args.csv else None
    mood = (
        MoodPlayer(args.playlist_dir, model.class_names, args.mood_window_s, args.play, emit)
        if args.playlist_dir
        else None
    )
    predictor = Predictor(
        model, detector, args.margin, emit, csv_sink, mood, args.detect_every, not args.no_align, not args.no_levels
    )
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
            failures += run_video(predictor, path, key, args, camera=False)
        if args.camera is not None:
            failures += run_video(predictor, args.camera, f"camera{args.camera}", args, camera=True)
        completed = True
    except KeyboardInterrupt:
        completed = args.camera is not None  # stopping the camera is the normal end
        if not completed:
            raise
    finally:
        if csv_sink is not None:
            csv_sink.close(keep=completed)
    elapsed = time.perf_counter() - start
    if args.timeline:
        from amobilenet_jax.predict.timeline import draw

        draw(timeline, args.timeline, args.smooth_s)
    rate = predictor.frames / elapsed if elapsed > 0 else 0.0
    print(
        f"predict: {predictor.frames} images/frames, {predictor.faces} faces, {failures} unreadable, "
        f"{elapsed:.1f} s ({rate:.1f} frames/s)"
        + (f"; table in {args.csv}" if args.csv else "")
        + (f"; annotated copies in {args.out}" if args.out else "")
        + (f"; timeline in {args.timeline}" if args.timeline else ""),
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


def run_video(predictor: Predictor, source, key: str, args, camera: bool) -> int:
    from amobilenet_jax.predict.tracking import Tracker

    predictor.detector.detect_width = args.detect_width or VIDEO_DETECT_WIDTH[args.detector]
    predictor.tracker = Tracker(smooth_s=args.smooth_s, hold_s=args.hold_s)
    predictor._since_detection = 0
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

        model = OnnxModel(args.onnx)
    else:
        model = inference.load_model(workdir=args.workdir, weights=args.weights)
    if args.no_crops:  # read when the model first runs, so set before it does
        model.config.eval_crops = 0
    return model
