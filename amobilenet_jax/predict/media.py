"""predict's inputs: photos, folders (searched recursively), videos and a camera, as frames."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


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
    if not os.path.exists(path):
        raise ValueError("no such file")
    return decode_image(path)


class TooManyPixels(ValueError):
    """An image larger than the caller allows, found from its header before it is decoded."""


def decode_image(file, max_pixels: int | None = None, formats: tuple[str, ...] | None = None) -> np.ndarray:
    """``read_image`` of a path or a binary file object; an image of more than ``max_pixels``
    (width x height, read from its header before decoding: a decompression bomb never unpacks)
    raises ``TooManyPixels``, and only PIL's ``formats`` are tried when given. Raises ValueError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(file, formats=formats) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise TooManyPixels(f"{width}x{height} pixels, more than the {max_pixels} allowed")
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except TooManyPixels:
        raise
    except Image.DecompressionBombError as e:
        raise TooManyPixels(" ".join(str(e).split())[:160]) from None
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
