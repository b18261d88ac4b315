"""Real faces for tests, made from the photos that ship inside scikit-image (no downloads)."""

from __future__ import annotations

import numpy as np

# The astronaut photo's one face, as OpenCV's cascade finds it: (x, y, w, h).
ASTRONAUT_FACE = (176, 65, 96, 96)


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # RGB 512x512, one smiling face


def sample_faces(native_shape: tuple[int, int, int], count: int = 8) -> np.ndarray:
    """Real faces as a model takes them, uint8 ``[count, *native_shape]``: the astronaut's face
    (and its mirror image), then faces of scikit-image's LFW subset."""
    from skimage import color, data, transform

    height, width, channels = native_shape

    def fit(image):  # float in [0, 1], HxW or HxWx3 -> uint8 native_shape
        if channels == 1 and image.ndim == 3:
            image = color.rgb2gray(image)
        image = transform.resize(image, (height, width), anti_aliasing=True)
        if image.ndim == 2:
            image = np.repeat(image[..., None], channels, axis=-1)
        return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)

    face = data.astronaut()[25:185, 140:300] / 255.0  # the face with hair and chin, square
    faces = [fit(face), fit(face[:, ::-1])]
    lfw = data.lfw_subset()  # its first 100 images are faces
    faces += [fit(lfw[i]) for i in range(max(0, count - 2))]
    return np.stack(faces[:count])


def head_and_shoulders() -> np.ndarray:
    return astronaut()[20:300, 100:360]


SMALL_FACE_AT = (300, 200, 46)  # x, y and width of the head and shoulders in small_face_frame()


def small_face_frame() -> np.ndarray:
    """640 x 480, grey, with the astronaut's head and shoulders 46 px wide at SMALL_FACE_AT: a
    face of about 17 px, too small for RetinaFace on the frame as it is."""
    import cv2

    x, y, width = SMALL_FACE_AT
    head = head_and_shoulders()
    small = cv2.resize(head, None, fx=width / head.shape[1], fy=width / head.shape[1], interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[y : y + small.shape[0], x : x + small.shape[1]] = small
    return frame


def group_photo() -> np.ndarray:
    """Three faces on one 900x420 canvas: the astronaut at three sizes, one mirrored."""
    import cv2

    canvas = np.full((420, 900, 3), 200, np.uint8)
    head = head_and_shoulders()
    x = 10
    for scale, mirror in ((1.4, False), (1.0, True), (0.8, False)):
        patch = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        patch = patch[:, ::-1] if mirror else patch
        h, w = min(patch.shape[0], 420), min(patch.shape[1], 900 - x)
        canvas[:h, x : x + w] = patch[:h, :w]
        x += w + 10
    return canvas


def write_video(path: str, frames: int, fps: float = 25.0, size=(640, 480), face_from: int = 0) -> None:
    """An mp4v video: a plain background, and from frame ``face_from`` on the astronaut drifting across it."""
    import cv2

    head = head_and_shoulders()
    width, height = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        canvas = np.full((height, width, 3), 90, np.uint8)
        if i >= face_from:
            x = int((width - head.shape[1]) * i / max(frames - 1, 1))
            y = (height - head.shape[0]) // 2
            canvas[y : y + head.shape[0], x : x + head.shape[1]] = head
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()


def write_crossing_video(path: str, frames: int = 16, fps: float = 10.0, size=(640, 480)) -> None:
    """Two faces that cross: the astronaut moving right in the upper half, a mirrored copy moving
    left in the lower half; their paths cross mid-video."""
    import cv2

    head = cv2.resize(head_and_shoulders(), None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    mirrored = head[:, ::-1]
    width, height = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    span = width - head.shape[1]
    for i in range(frames):
        canvas = np.full((height, width, 3), 90, np.uint8)
        a = int(span * i / (frames - 1))
        canvas[10 : 10 + head.shape[0], a : a + head.shape[1]] = head
        b = span - a
        top = height - head.shape[0] - 10
        canvas[top : top + head.shape[0], b : b + head.shape[1]] = mirrored
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()
