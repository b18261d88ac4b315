"""Faces in photos and video frames, found offline, cropped the way the training data was.

Detector: OpenCV's Viola-Jones frontal-face Haar cascade, the XML file that ships inside the
``opencv-python-headless`` 4.x wheel (``cv2.data.haarcascades``), so nothing is downloaded at
run time. The paper used MTCNN; the maintained MTCNN packages need TensorFlow or an old torch,
which this project's install avoids. The cascade finds frontal and near-frontal faces, which is
what FER+ holds (its faces were found by a frontal detector too); profiles are missed.

A face becomes model input in two steps:

1. ``crop``: the detector's box as a square, grown by ``margin`` of its side on each side,
   cut from the frame (edges outside the frame repeat the border), turned grayscale for a
   grayscale data set, and resized with area averaging to the data set's stored size (48 x 48
   for FERPlus) as uint8: what the training images were. The cascade's box on a FER+ image
   spans 98% of the stored crop (median), and the shipped model reads margin-0 crops nearly
   as well as the stored ones (86.6% against 87.1% on the FERPlus Valid faces it finds;
   every 0.05 of margin costs 2-3 points: experiments/use/crop_margin_cpu.json), so 0 is the default.
2. ``data.augment.prepare_images`` (inside ``inference.Model.logits``): the resize to
   ``data.image_size`` and the normalisation of training and evaluation, one shared function.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"


def _cv2():
    try:
        import cv2
    except ImportError as e:  # a dependency; this names the fix
        raise ImportError(f"face detection needs opencv-python-headless<5 ({e})") from None
    return cv2


def cascade_path() -> str:
    """The frontal-face cascade inside the installed OpenCV wheel."""
    cv2 = _cv2()
    base = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = os.path.join(base, CASCADE_FILE)
    if not base or not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path or CASCADE_FILE}: OpenCV {cv2.__version__} ships no Haar cascades "
            "(opencv-python-headless 4.x does; "
            "5.0 dropped them): pip install 'opencv-python-headless<5'"
        )
    return path


@dataclasses.dataclass(frozen=True)
class Face:
    """A detected face: ``box`` (x, y, w, h) in the frame's pixels and the cascade's
    ``detector_score`` (its final-stage weight: higher is surer)."""

    box: tuple[int, int, int, int]
    detector_score: float


class FaceDetector:
    """Haar-cascade face detection on a (down-scaled) grayscale copy of each frame.

    ``detect_width``: frames wider than this are shrunk to it before detection (boxes are
    mapped back to the original pixels); detection time grows with the pixel count, and
    faces the model can read are large enough to survive it. ``min_face``: the smallest
    face side kept, in original pixels.
    """

    def __init__(self, min_face: int = 40, detect_width: int = 640, scale_factor: float = 1.1, min_neighbors: int = 5):
        cv2 = _cv2()
        self._cascade = cv2.CascadeClassifier(cascade_path())
        if self._cascade.empty():
            raise RuntimeError(f"{cascade_path()}: OpenCV could not load the cascade")
        self.min_face = int(min_face)
        self.detect_width = int(detect_width)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in an RGB (H, W, 3) or grayscale (H, W) / (H, W, 1) uint8 frame, largest first."""
        cv2 = _cv2()
        gray = to_gray(frame)
        scale = 1.0
        if self.detect_width and gray.shape[1] > self.detect_width:
            scale = self.detect_width / gray.shape[1]
            gray = cv2.resize(
                gray, (self.detect_width, max(1, round(gray.shape[0] * scale))), interpolation=cv2.INTER_AREA
            )
        min_side = max(8, int(round(self.min_face * scale)))
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
            outputRejectLevels=True,
        )
        faces = []
        for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            box = tuple(int(round(v / scale)) for v in (x, y, w, h))
            faces.append(Face(box, float(weight)))
        faces.sort(key=lambda f: -f.box[2] * f.box[3])
        return faces


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W) luma of an RGB, RGBA or grayscale frame (ITU-R 601 weights, as PIL's "L")."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        cv2 = _cv2()
        return cv2.cvtColor(np.ascontiguousarray(frame[:, :, :3]), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"a frame must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {frame.shape}")


def expand_box(box, margin: float) -> tuple[int, int, int, int]:
    """``box`` (x, y, w, h) grown by ``margin`` of its size on each side, as a square about its centre."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side))


def crop(frame: np.ndarray, box, native_shape: tuple[int, int, int], margin: float = 0.0) -> np.ndarray:
    """The face in ``box`` as the model's stored-image format: uint8 ``native_shape`` (H, W, C).

    Parts of the grown box outside the frame repeat the frame's border pixels.
    """
    cv2 = _cv2()
    height, width, channels = native_shape
    image = to_gray(frame) if channels == 1 else np.asarray(frame)[:, :, :3]
    x, y, w, h = expand_box(box, margin)
    rows = np.clip(np.arange(y, y + h), 0, image.shape[0] - 1)
    cols = np.clip(np.arange(x, x + w), 0, image.shape[1] - 1)
    patch = image[rows[:, None], cols[None, :]]
    interpolation = cv2.INTER_AREA if w >= width else cv2.INTER_LINEAR
    patch = cv2.resize(np.ascontiguousarray(patch), (width, height), interpolation=interpolation)
    return patch.reshape(height, width, channels).astype(np.uint8)
