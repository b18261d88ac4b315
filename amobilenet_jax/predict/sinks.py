"""predict's outputs: one record per face (JSON lines, a CSV table) and annotated copies of
the images and videos, each written whole or not at all (``files``)."""

from __future__ import annotations

import csv
import os

import numpy as np

from amobilenet_jax import files
from amobilenet_jax.predict.media import Frame


def face_record(frame: Frame, index: int, face, probabilities: np.ndarray, class_names, track=None) -> dict:
    """One face: in video, ``track`` is its id across frames (photos have none); a face carried
    along its track between detections (``--detect_every``) has ``detector_score`` null."""
    top = int(np.argmax(probabilities))
    return {
        "file": frame.source,
        "frame": frame.frame,
        "time_s": frame.time_s,
        "face": index,
        "track": track,
        "box": [int(v) for v in face.box],
        "score": round(float(probabilities[top]), 4),
        "label": class_names[top],
        "probabilities": {name: round(float(p), 4) for name, p in zip(class_names, probabilities)},
        "detector_score": None if face.detector_score is None else round(face.detector_score, 3),
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


# predict --csv's columns before the one p_<class> column a class (and message, error after)
CSV_COLUMNS_HEAD = ["file", "frame", "time_s", "face", "track", "x", "y", "w", "h", "score", "label", "detector_score"]


def csv_row(record: dict) -> dict:
    """A record flattened for a table: its box as x, y, w, h, its probabilities as p_<class>."""
    row = {k: v for k, v in record.items() if k not in ("box", "probabilities")}
    if "box" in record:
        row.update(zip("xywh", record["box"]))
    for name, p in record.get("probabilities", {}).items():
        row[f"p_{name}"] = p
    return row


class CsvSink:
    """The records as CSV, written to a temporary file and renamed into place at the end."""

    def __init__(self, path: str, class_names):
        self.path = path
        self.columns = CSV_COLUMNS_HEAD + [f"p_{name}" for name in class_names] + ["message", "error"]
        self.output = files.AtomicOutput(path)
        self.file = open(self.output.tmp, "w", newline="")  # noqa: SIM115 - closed in close()
        self.writer = csv.DictWriter(self.file, self.columns, extrasaction="ignore")
        self.writer.writeheader()

    def write(self, record: dict) -> None:
        self.writer.writerow(csv_row(record))

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
