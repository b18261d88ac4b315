"""The detector study's hard frame set (``study.py --hard``): small, turned, degraded faces.

Each frame is a 640 x 480 crop of one of detectors.BACKGROUNDS with 1-3 FERPlus Valid faces (each
used once, in order), each enlarged to a side drawn evenly from HARD_SIZE_RANGE pixels, turned by
an angle drawn evenly from +-HARD_TILT_DEG and pasted whole (the turned square's own pixels) where
its bounding square overlaps no other face's. Each frame gets one of CONDITIONS (drawn evenly):

- clean;
- dim: the whole frame times 0.4-0.6;
- low_contrast: the whole frame's deviations from its mean grey level times 0.3-0.5;
- blur: each face blurred before it is pasted, Gaussian sigma 0.6-1.2 pixels of its 48-pixel
  stored image (so sigma grows with the face's size: the same loss of detail at every size), and
  the background with the sigma a face of a size drawn from HARD_SIZE_RANGE would get;
- noise: Gaussian noise of standard deviation 6-14 grey levels over the whole frame;
- jpeg: the whole frame encoded as JPEG at quality 35-70 and decoded;
- combined: dim or low_contrast, then blur, then jpeg (as a dim webcam frame would be).

HARD_FACE_FREE face-free frames (same backgrounds, same conditions) count false boxes.

Found: a detected box matched one to one (highest IoU first) to a pasted face at IoU >= 0.4 with
the upright square of the face's side about its centre (the rule of ``--tilt_deg``). A detector's
box for a turned face lies between that square and the turned square's bounding square (side
up to 1.37 times larger at 30 degrees), whose IoU with each other is at least 0.54, so a box
hugging either is found.

Each face found is cut out and classified as ``predict`` does by default (the detector's
``faces.CROP_GEOMETRY``, eyes levelled with its landmarks, the shipped model's test-time views).

Detector names: ``retinaface`` (the whole frame) and ``retinaface@W`` (the frame enlarged to W
pixels wide) run once each at a low threshold with no smallest size, and each row keeps the boxes
above its threshold and ``--min_face``; ``A+B`` is the union of A's and B's boxes (overlaps merged
by NMS at IoU 0.4), each at its own threshold; ``A>B`` runs B (a second pass on the enlarged
frame) only on the frames where A finds no face smaller than SMALL_FACE pixels (nothing, or only
large faces). ``A+B^P`` is ``A+B`` where a box of B's that overlaps none of A's must also pass a
second look: RetinaFace on the region around it (2.5 times its side), scaled so
that the box is P pixels, finds a face there overlapping it (IoU >= 0.4) scoring at least the
row's third threshold. Their cost per frame is measured per frame: the sum of the passes that ran.
"""

from __future__ import annotations

import detectors
import numpy as np

from amobilenet_jax.predict.tracking import iou  # the box overlap predict's tracker uses

HARD_SIZE_RANGE = (48, 150)
HARD_SIZE_BINS = ((48, 63), (64, 79), (80, 99), (100, 124), (125, 150))
HARD_TILT_DEG = 30.0
HARD_FACE_FREE = 1000
CONDITIONS = ("clean", "dim", "low_contrast", "blur", "noise", "jpeg", "combined")
LOW_THRESHOLD = 0.4
THRESHOLDS = (0.5, 0.7, 0.8, 0.9)
# A+B, A>B and A~B: (A's threshold, B's threshold)
PAIR_THRESHOLDS = ((0.8, 0.8), (0.8, 0.9), (0.8, 0.95), (0.7, 0.9))
SMALL_FACE = 100
GOAL_SIZE = 56  # issue 36's goal: >= 90% of the faces of this side and more found
# A+B^P: (A's threshold, B's threshold, the second look's threshold)
VERIFY_THRESHOLDS = ((0.8, 0.8, 0.5), (0.8, 0.8, 0.8), (0.8, 0.8, 0.9), (0.8, 0.9, 0.5), (0.8, 0.9, 0.8),
                     (0.8, 0.9, 0.9))  # fmt: skip
IOU_FOUND = 0.4
FACE_GAP = 4  # pixels between the bounding squares of two faces in a frame


# ---------------------------------------------------------------- frames


def draw_condition(rng: np.random.Generator) -> dict:
    """A frame's condition and its parameters."""
    condition = CONDITIONS[rng.integers(len(CONDITIONS))]
    out: dict = {"condition": condition}
    light = condition in ("dim", "low_contrast")
    if condition == "combined":
        light = True
        out["light"] = ("dim", "low_contrast")[rng.integers(2)]
    if light:
        if out.get("light", condition) == "dim":
            out["brightness"] = float(rng.uniform(0.4, 0.6))
        else:
            out["contrast"] = float(rng.uniform(0.3, 0.5))
    if condition in ("blur", "combined"):
        out["blur_48px"] = float(rng.uniform(0.6, 1.2))
        out["background_blur_px"] = out["blur_48px"] * float(rng.uniform(*HARD_SIZE_RANGE)) / 48
    if condition == "noise":
        out["noise_sd"] = float(rng.uniform(6, 14))
    if condition in ("jpeg", "combined"):
        out["jpeg_quality"] = int(rng.integers(35, 71))
    return out


def bounding_side(size: int, angle: float) -> int:
    """Side of the axis-aligned square that holds a square of ``size`` turned by ``angle`` degrees."""
    t = np.radians(angle)
    return int(np.ceil(size * (abs(np.cos(t)) + abs(np.sin(t))))) + 2


def apart(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    """Whether squares ``(x, y, side)`` are at least FACE_GAP pixels apart."""
    (ax, ay, a_side), (bx, by, b_side) = a, b
    gap = FACE_GAP
    return ax + a_side + gap <= bx or bx + b_side + gap <= ax or ay + a_side + gap <= by or by + b_side + gap <= ay


def place(rng: np.random.Generator, sides: list[int], tries: int = 200) -> list[tuple[int, int] | None]:
    """Top-left corners for squares of ``sides`` inside the frame, none within FACE_GAP of another
    (None where no place was found in ``tries`` draws)."""
    height, width = detectors.FRAME
    placed: list[tuple[int, int, int]] = []
    out: list[tuple[int, int] | None] = []
    for side in sides:
        corner = None
        for _ in range(tries):
            x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            if all(apart((x, y, side), other) for other in placed):
                corner = (x, y)
                placed.append((x, y, side))
                break
        out.append(corner)
    return out


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def paste_turned(frame: np.ndarray, face: np.ndarray, corner: tuple[int, int], side: int, angle: float) -> None:
    """Pastes the square grey ``face`` turned by ``angle`` degrees (counter-clockwise) about its
    centre, whole, into the ``side``-pixel bounding square at ``corner``."""
    import cv2

    size = face.shape[0]
    turn = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
    turn[:, 2] += (side - size) / 2  # the face's centre to the bounding square's
    turned = cv2.warpAffine(face, turn, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones((size, size), np.uint8), turn, (side, side), flags=cv2.INTER_NEAREST) > 0
    x, y = corner
    region = frame[y : y + side, x : x + side]
    region[inside] = turned[inside][:, None]


def degrade(frame: np.ndarray, condition: dict, rng: np.random.Generator) -> np.ndarray:
    """The frame-wide part of ``condition``: light, noise, JPEG (in that order)."""
    import cv2

    out = frame.astype(np.float32)
    if "brightness" in condition:
        out *= condition["brightness"]
    if "contrast" in condition:
        mean = out.mean()
        out = mean + (out - mean) * condition["contrast"]
    if "noise_sd" in condition:
        out += rng.normal(0.0, condition["noise_sd"], out.shape).astype(np.float32)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if "jpeg_quality" in condition:
        ok, data = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, condition["jpeg_quality"]])
        out = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    return out


def hard_frame(rng, photos, faces48: list[np.ndarray], condition: dict) -> tuple[np.ndarray, list[dict]]:
    """One frame with ``faces48`` (0-3 stored faces) pasted small, turned and degraded; and per
    face its upright square ``box``, ``size`` and ``angle`` (faces with no room are left out)."""
    import cv2

    frame = detectors.background_frame(rng, photos)
    if "background_blur_px" in condition:
        frame = blur(frame, condition["background_blur_px"])
    sizes = [int(rng.integers(HARD_SIZE_RANGE[0], HARD_SIZE_RANGE[1] + 1)) for _ in faces48]
    angles = [float(rng.uniform(-HARD_TILT_DEG, HARD_TILT_DEG)) for _ in faces48]
    sides = [bounding_side(s, a) for s, a in zip(sizes, angles)]
    placed = []
    for k, (face48, size, angle, side, corner) in enumerate(zip(faces48, sizes, angles, sides, place(rng, sides))):
        if corner is None:
            continue
        face = cv2.resize(face48.reshape(48, 48), (size, size), interpolation=cv2.INTER_CUBIC)
        if "blur_48px" in condition:
            face = blur(face, condition["blur_48px"] * size / 48)
        paste_turned(frame, face, corner, side, angle)
        x0, y0 = corner[0] + (side - size) / 2, corner[1] + (side - size) / 2
        placed.append({"slot": k, "box": (x0, y0, size, size), "size": size, "angle": angle})
    return degrade(frame, condition, rng), placed


def hard_set(images: np.ndarray, num_faces: int, photos, num_empty: int = HARD_FACE_FREE, seed: int = 3) -> dict:
    """The frames and their faces: ``frames``, ``faces`` (one dict per pasted face: its frame, box,
    size, angle, condition, Valid index), ``empty`` frames and ``empty_conditions``."""
    rng = np.random.default_rng(seed)
    frames, faces, conditions = [], [], []
    next_face = 0
    while next_face < num_faces:
        count = min(int(rng.integers(1, 4)), num_faces - next_face)
        indices = list(range(next_face, next_face + count))
        condition = draw_condition(rng)
        frame, placed = hard_frame(rng, photos, [images[i] for i in indices], condition)
        for p in placed:
            faces.append({**p, "frame": len(frames), "condition": condition["condition"], "index": indices[p["slot"]]})
        frames.append(frame)
        conditions.append(condition)
        next_face += count
    empty_conditions = [draw_condition(rng) for _ in range(num_empty)]
    empty = [hard_frame(rng, photos, [], c)[0] for c in empty_conditions]
    return {"frames": frames, "conditions": conditions, "faces": faces, "empty": empty,
            "empty_conditions": empty_conditions}  # fmt: skip


# ---------------------------------------------------------------- detectors and their passes


def base_detector(name: str):
    """A single pass at LOW_THRESHOLD with no smallest size (rows filter both)."""
    from amobilenet_jax import faces

    if name == "retinaface" or name == f"retinaface@{detectors.FRAME[1]}":
        return faces.RetinaFaceDetector(min_face=1, detect_width=0, threshold=LOW_THRESHOLD)
    if name.startswith("retinaface@"):
        width = int(name.split("@")[1])
        inner = faces.RetinaFaceDetector(min_face=1, detect_width=0 if width > detectors.FRAME[1] else width,
                                         threshold=LOW_THRESHOLD)  # fmt: skip
        return detectors.Enlarged(inner, width, min_face=1) if width > detectors.FRAME[1] else inner
    return detectors.make(name)


def parts(name: str) -> tuple[str, list[str]]:
    """``("+", [A, B])``, ``(">", [A, B])``, ``("~", [A, B])`` or ``("", [name])``; ``A+B^P`` is
    ``("+", [A, B])`` too (``second_look_px`` gives its P)."""
    name = name.split("^")[0]
    for op in ("+", ">", "~"):
        if op in name:
            return op, name.split(op)
    return "", [name]


def second_look_px(name: str) -> int | None:
    return int(name.split("^")[1]) if "^" in name else None


class SecondLook:
    """``faces.RetinaFaceDetector.second_look`` with the face scaled to ``face_px``, its score and
    its ms kept per (frame, box)."""

    def __init__(self, face_px: int):
        from amobilenet_jax import faces

        self.face_px = int(face_px)
        self.detector = faces.RetinaFaceDetector(min_face=1, detect_width=0)
        self.scores: dict = {}
        self.ms: dict = {}

    def __call__(self, frame_index: int, frame: np.ndarray, box) -> float:
        import time

        key = (frame_index, tuple(box))
        if key not in self.scores:
            started = time.perf_counter()
            self.scores[key] = self.detector.second_look(frame, box, self.face_px)
            self.ms[key] = 1000 * (time.perf_counter() - started)
        return self.scores[key]


def keep(found: list, threshold: float | None, min_face: int) -> list:
    return [f for f in found if (threshold is None or f.detector_score > threshold) and min(f.box[2:]) >= min_face]


def merge(found: list) -> list:
    """Boxes of two passes, overlaps merged by NMS (IoU 0.4, as RetinaFace's own), largest first."""
    from amobilenet_jax import faces

    if not found:
        return []
    boxes = np.array([f.box for f in found], np.float64)
    kept = faces._nms(boxes, np.array([f.detector_score for f in found]), 0.4)
    return sorted((found[i] for i in kept), key=lambda f: -f.box[2] * f.box[3])


def combine(name, runs, thresholds, min_face, looks=None, frames=None) -> tuple[list, list[float], list[bool]]:
    """Per frame (face frames, then face-free): a row's faces, its ms and whether a second pass ran.
    ``runs``: base name -> (found per frame, ms per frame); ``looks``: face_px -> SecondLook, and
    ``frames`` (face frames, then face-free) for ``A+B^P``."""
    op, names = parts(name)
    if not op:
        found, ms = runs[name]
        return [keep(f, thresholds, min_face) for f in found], list(ms), [False] * len(ms)
    (first, ms1), (second, ms2) = runs[names[0]], runs[names[1]]
    t1, t2 = thresholds[:2]
    look = looks[second_look_px(name)] if second_look_px(name) else None
    out, ms, ran = [], [], []
    for i, (f1, f2, m1, m2) in enumerate(zip(first, second, ms1, ms2)):
        a = keep(f1, t1, min_face)
        small = any(max(f.box[2:]) < SMALL_FACE for f in a)
        needed = op == "+" or (op == ">" and not small) or (op == "~" and (small or not a))
        b, extra = keep(f2, t2, min_face), 0.0
        if look is not None:  # B's boxes that A did not find need a second look
            new = [f for f in b if not any(iou(f.box, g.box) >= IOU_FOUND for g in a)]
            scores = {id(f): look(i, frames[i], f.box) for f in new}
            extra = sum(look.ms[(i, tuple(f.box))] for f in new)
            b = [f for f in b if id(f) not in scores or scores[id(f)] >= thresholds[2]]
        out.append(merge(a + b) if needed else a)
        ms.append(m1 + m2 + extra if needed else m1)
        ran.append(needed and op in ("~", ">"))
    return out, ms, ran


# ---------------------------------------------------------------- scoring


def match_frame(detected: list, truths: list[tuple]) -> list:
    """For each truth box, the detected face matched to it one to one (highest IoU first, IoU >=
    IOU_FOUND), or None."""
    pairs = sorted(
        ((iou(face.box, truth), i, j) for i, truth in enumerate(truths) for j, face in enumerate(detected)),
        reverse=True,
    )
    out: list = [None] * len(truths)
    used: set[int] = set()
    for v, i, j in pairs:
        if v < IOU_FOUND:
            break
        if out[i] is None and j not in used:
            out[i], used = detected[j], used | {j}
    return out


class Classifier:
    """The shipped model on predict's crops of detected faces, each crop classified once per run."""

    def __init__(self, model, frames, geometry, light: str = "levels"):
        self.model, self.frames, self.geometry, self.light = model, frames, geometry, light
        self._labels: dict = {}

    def __call__(self, items: list[tuple[int, object]]) -> np.ndarray:
        """Predicted classes of ``(frame index, face)`` pairs."""
        from amobilenet_jax import faces

        keys = [(i, f.box, f.landmarks) for i, f in items]
        todo = list(dict.fromkeys(k for k in keys if k not in self._labels))
        if todo:
            shape = self.model.native_shape
            crops = [faces.crop(self.frames[i], box, shape, geometry=self.geometry, landmarks=points)
                     for i, box, points in todo]  # fmt: skip
            step = {"levels": faces.level, "light": faces.level_light, "raw": lambda c: c}[self.light]
            crops = np.stack([step(c) for c in crops])
            for k, label in zip(todo, np.argmax(self.model.logits(crops), -1)):
                self._labels[k] = int(label)
        return np.array([self._labels[k] for k in keys], int)


def size_bin(size: int) -> str:
    return next(f"{lo}-{hi}" for lo, hi in HARD_SIZE_BINS if lo <= size <= hi)


def rates(mask, hit, pred, labels, stored) -> dict:
    """One group of faces: count, found, accuracy on found, end to end, stored-crop accuracy (all
    and found)."""
    n, found = int(mask.sum()), mask & hit
    nf = int(found.sum())
    return {
        "faces": n,
        "found": float(found.sum() / n) if n else 0.0,
        "accuracy_on_found": float(np.mean(pred[found] == labels[found])) if nf else 0.0,
        "end_to_end_accuracy": float(np.mean(pred[mask] == labels[mask])) if n else 0.0,
        "stored_crop_accuracy": float(np.mean(stored[mask] == labels[mask])) if n else 0.0,
        "stored_crop_accuracy_of_found": float(np.mean(stored[found] == labels[found])) if nf else 0.0,
    }


def match_faces(found: list, faces: list[dict]) -> tuple[list, int]:
    """Each pasted face's matched detection (or None), from ``found`` per frame (face frames
    first), and how many detections in face frames matched no face."""
    matched: list = [None] * len(faces)
    by_frame: dict[int, list[int]] = {}
    for k, face in enumerate(faces):
        by_frame.setdefault(face["frame"], []).append(k)
    unmatched = 0
    for i, ks in by_frame.items():
        got = match_frame(found[i], [faces[k]["box"] for k in ks])
        for k, m in zip(ks, got):
            matched[k] = m
        unmatched += len(found[i]) - sum(m is not None for m in got)
    return matched, unmatched


def hard_row(name, thresholds, min_face, runs, data, labels, stored, classify, looks=None) -> dict:
    """One table row: a detector (or two passes) at its threshold(s) and smallest face."""
    frames, faces = data["frames"], data["faces"]
    found, ms, ran = combine(name, runs, thresholds, min_face, looks, frames + data["empty"])
    empty_found = found[len(frames) :]
    matched, unmatched = match_faces(found, faces)
    hit = np.array([m is not None for m in matched])
    pred = np.full(len(faces), -1)
    if hit.any():
        pred[hit] = classify([(faces[k]["frame"], matched[k]) for k in np.nonzero(hit)[0]])
    every = np.ones(len(faces), bool)
    sizes = np.array([size_bin(f["size"]) for f in faces])
    conditions = np.array([f["condition"] for f in faces])
    empty_conditions = [c["condition"] for c in data["empty_conditions"]]
    false_by_condition = {
        c: 100 * sum(len(f) for f, e in zip(empty_found, empty_conditions) if e == c) / empty_conditions.count(c)
        for c in CONDITIONS
        if c in empty_conditions
    }
    return {
        "detector": name,
        "threshold": thresholds,
        "min_face": min_face,
        **rates(every, hit, pred, labels, stored),
        "false_boxes_per_100_empty_frames": 100 * sum(len(f) for f in empty_found) / len(empty_found),
        "false_boxes_per_100_empty_frames_by_condition": false_by_condition,
        "unmatched_boxes_per_100_face_frames": 100 * unmatched / len(frames),
        "by_size": {f"{lo}-{hi}": rates(sizes == f"{lo}-{hi}", hit, pred, labels, stored) for lo, hi in HARD_SIZE_BINS},
        "goal_size": rates(np.array([f["size"] >= GOAL_SIZE for f in faces]), hit, pred, labels, stored),
        "by_condition": {c: rates(conditions == c, hit, pred, labels, stored) for c in CONDITIONS},
        "ms_per_frame_median": float(np.median(ms)),
        "ms_per_frame_mean": float(np.mean(ms)),
        "second_pass_ran_on_frames": float(np.mean(ran)) if parts(name)[0] in ("~", ">") else None,
    }


def row_thresholds(name: str) -> tuple:
    op, names = parts(name)
    if second_look_px(name):
        return VERIFY_THRESHOLDS
    if op:
        return PAIR_THRESHOLDS
    if names[0].startswith("retinaface"):
        return THRESHOLDS
    return detectors.THRESHOLDS.get(name, (None,))


def run(args, model, valid, photos) -> dict:
    """Makes the hard set, runs every detector named once, and scores each row."""
    from amobilenet_jax import faces as faces_lib

    n = len(valid.labels) if not args.num_faces else min(args.num_faces, len(valid.labels))
    data = hard_set(valid.images, n, photos, args.face_free)
    faces = data["faces"]
    index = np.array([f["index"] for f in faces])
    labels = valid.labels[index]
    stored = np.argmax(model.logits(valid.images[index]), -1)
    print(f"{len(faces)} Valid faces in {len(data['frames'])} frames, {len(data['empty'])} face-free frames; "
          f"stored crops: {100 * np.mean(stored == labels):.2f}%", flush=True)  # fmt: skip
    names = args.detectors.split(",")
    bases = list(dict.fromkeys(b for name in names for b in parts(name)[1]))
    runs = {}
    for base in bases:
        found, ms = detectors.run_detector(base_detector(base), data["frames"] + data["empty"])
        runs[base] = (found, ms)
        print(f"{base}: {np.median(ms):.1f} ms a frame (median)", flush=True)
    base = parts(names[0])[1][0].split("@")[0]
    looks = {px: SecondLook(px) for px in {second_look_px(name) for name in names} - {None}}
    rows = []
    for light in args.light.split(","):  # each crop's light levelled (predict's default) or as cut out
        classify = Classifier(model, data["frames"], faces_lib.CROP_GEOMETRY.get(base), light=light)
        for name in names:
            for thresholds in row_thresholds(name):
                for min_face in args.min_faces:
                    rows.append({**hard_row(name, thresholds, min_face, runs, data, labels, stored, classify, looks),
                                 "light": light})  # fmt: skip
                    r = rows[-1]
                    print(f"{name} {thresholds} min_face {min_face} light {light}: found {100 * r['found']:.1f}%, "
                          f"{r['false_boxes_per_100_empty_frames']:.1f} false boxes, "
                          f"acc. on found {100 * r['accuracy_on_found']:.1f}%, "
                          f"end to end {100 * r['end_to_end_accuracy']:.1f}%", flush=True)  # fmt: skip
    return {
        "question": "how many small, turned, degraded faces predict's detector finds and reads "
        "(FERPlus Valid faces pasted into photos, issue 36)",
        "faces": len(faces),
        "face_frames": len(data["frames"]),
        "face_free_frames": len(data["empty"]),
        "faces_by_size": {k: v["faces"] for k, v in rows[0]["by_size"].items()} if rows else {},
        "faces_by_condition": {k: v["faces"] for k, v in rows[0]["by_condition"].items()} if rows else {},
        "size_px": list(HARD_SIZE_RANGE),
        "tilt_deg": HARD_TILT_DEG,
        "conditions": CONDITIONS,
        "second_pass_when": f"A>B: the first pass finds no face under {SMALL_FACE} px; "
        f"A~B: the first pass finds nothing or a face under {SMALL_FACE} px",
        "frame": f"{detectors.FRAME[1]}x{detectors.FRAME[0]}",
        "backgrounds": detectors.BACKGROUNDS,
        "stored_crop_accuracy": float(np.mean(stored == labels)),
        "crop": "predict's: faces.CROP_GEOMETRY of the detector, eyes levelled with its landmarks; "
        "light and detail levelled (faces.level) in the rows whose light is 'levels', light alone "
        "(faces.level_light) in those whose light is 'light'",
        "rows": rows,
    }, data


# ---------------------------------------------------------------- tables and the picture


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def threshold_text(t) -> str:
    return "/".join(str(v) for v in t) if isinstance(t, (list, tuple)) else str(t)


def markdown(result: dict, detail: str = "retinaface") -> str:
    """The hard set's tables: every row; then by size and by condition for the row ``detail``
    names (its first row at threshold 0.8 and min_face 40: predict's default)."""
    bins = [f"{lo}-{hi}" for lo, hi in HARD_SIZE_BINS]  # (the JSON file's keys come sorted as text)
    lines = [
        f"{result['faces']} faces in {result['face_frames']} frames, {result['face_free_frames']} face-free frames; "
        f"stored crops {pct(result['stored_crop_accuracy'])}%",
        "",
        f"| detector | threshold | min face | light | found (%) | found ≥ {GOAL_SIZE} px (%) "
        f"| by size {'/'.join(bins)} px | false boxes / 100 face-free | acc. on found (%) | end to end (%) "
        "| stored-crop acc. of found (%) | ms / frame (median / mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        sizes = "/".join(f"{100 * r['by_size'][b]['found']:.0f}" for b in bins)
        lines.append(
            f"| {r['detector']} | {threshold_text(r['threshold'])} | {r['min_face']} | {r.get('light', 'raw')} "
            f"| {pct(r['found'])} | {pct(r['goal_size']['found']) if 'goal_size' in r else '-'} | {sizes} "
            f"| {r['false_boxes_per_100_empty_frames']:.1f} | {pct(r['accuracy_on_found'])} "
            f"| {pct(r['end_to_end_accuracy'])} | {pct(r['stored_crop_accuracy_of_found'])} "
            f"| {r['ms_per_frame_median']:.0f} / {r['ms_per_frame_mean']:.0f} |"
        )
    chosen = [r for r in result["rows"] if r["detector"] == detail and r["threshold"] == 0.8 and r["min_face"] == 40]
    first = {}  # the first such row of each light setting (rows before light levels: 'raw')
    for r in chosen:
        first.setdefault(r.get("light", "raw"), r)
    for light, r in first.items():
        for group, key in (("face size (px)", "by_size"), ("condition", "by_condition")):
            falses = r["false_boxes_per_100_empty_frames_by_condition"] if key == "by_condition" else None
            lines += [
                "",
                f"{r['detector']}, threshold 0.8, min face 40, light {light}, by {group}:",
                "",
                f"| {group} | faces | found (%) | acc. on found (%) | end to end (%) | stored-crop acc. (%) "
                "| stored-crop acc. of found (%) |" + (" false boxes / 100 face-free |" if falses else ""),
                "|---|---|---|---|---|---|---|" + ("---|" if falses else ""),
            ]
            for k in bins if key == "by_size" else CONDITIONS:
                v = r[key][k]
                extra = f" {falses.get(k, 0.0):.1f} |" if falses else ""
                lines.append(
                    f"| {k} | {v['faces']} | {pct(v['found'])} | {pct(v['accuracy_on_found'])} "
                    f"| {pct(v['end_to_end_accuracy'])} | {pct(v['stored_crop_accuracy'])} "
                    f"| {pct(v['stored_crop_accuracy_of_found'])} |" + extra
                )
    return "\n".join(lines) + "\n"


def figure(data: dict, model, count: int = 6) -> bytes:
    """The first frames of a few conditions with predict's default boxes and labels (green), the
    faces ``--small_faces`` adds (cyan); the pasted faces' upright squares dashed."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amobilenet_jax import faces

    detector = faces.make_detector(faces.DEFAULT_DETECTOR)
    small = faces.make_detector(faces.DEFAULT_DETECTOR, small_faces=True)
    geometry = faces.CROP_GEOMETRY[faces.DEFAULT_DETECTOR]
    shown, seen = [], set()
    for i, c in enumerate(data["conditions"]):
        if c["condition"] not in seen and len(shown) < count:
            shown.append(i)
            seen.add(c["condition"])
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 5.6))
    for ax, i in zip(axes.ravel(), shown):
        frame = data["frames"][i]
        ax.imshow(frame)
        for face in data["faces"]:
            if face["frame"] == i:
                x, y, s, _ = face["box"]
                ax.add_patch(plt.Rectangle((x, y), s, s, fill=False, color="white", lw=1, ls="--"))
        found = detector.detect(frame)
        added = [f for f in small.detect(frame) if not any(iou(f.box, g.box) >= IOU_FOUND for g in found)]
        for face, color in [(f, "lime") for f in found] + [(f, "cyan") for f in added]:
            x, y, w, h = face.box
            crop = faces.crop(frame, face.box, model.native_shape, geometry=geometry, landmarks=face.landmarks)
            probs = model.probabilities(faces.level(crop)[None])[0]
            k = int(np.argmax(probs))
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color=color, lw=1.5))
            ax.text(x, y - 3, f"{model.class_names[k]} {probs[k]:.2f}", color=color, fontsize=7, weight="bold")
        ax.set_title(data["conditions"][i]["condition"], fontsize=9)
        ax.axis("off")
    fig.suptitle("predict's default (green) and what --small_faces adds (cyan) on hard frames "
                 "(dashed: the pasted FERPlus Valid faces)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return buf.getvalue()
