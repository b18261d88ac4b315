"""What the routes call: an upload decoded and its faces found on a thread pool (one detector a
thread), their crops classified by the batcher with other requests' faces, and predict's records
made from them (``predict.Predictor``'s own ``find`` and ``records``). A frame of a stream (the
page's camera or video) is tracked, held and smoothed by that stream's own tracker and mood player
(``Predictor.track``), as ``predict`` does a video's frames; a face's attention maps come from
``visualize``."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import io
import os
import threading
from collections.abc import Callable

import numpy as np

from amobilenet_jax.predict.media import Frame
from amobilenet_jax.predict.mood import MoodPlayer
from amobilenet_jax.predict.pipeline import ALIGN, HOLD_S, LEVELS, MAX_HOLD_S, Predictor
from amobilenet_jax.predict.tracking import Tracker
from amobilenet_jax.serve import uploads
from amobilenet_jax.serve.batcher import Batcher, batch_sizes
from amobilenet_jax.serve.streams import MAX_GAP_S, Streams

UNNAMED = "<upload>"  # the records' "file" when the client gave no file name
ATTENTION_SCALE = 3  # the attention images are the face crop this many times its native size
MAX_SMOOTH_S = 10.0  # a stream's longest smoothing window, seconds


def track_route(mood: str, index: int, path: str) -> str:
    """How a mood record names its track: the route that serves it, never its path."""
    return f"/v1/playlist/{mood}/{index}"


@dataclasses.dataclass
class Stream:
    """A stream's state between its frames: a predictor with predict's tracker (and mood player),
    and the lock that takes the stream's frames one at a time, in the order they came."""

    predictor: Predictor
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class Service:
    """A model and a face detector factory put behind the routes. ``make_detector()`` makes the
    detector of one pool thread (OpenCV's detectors are not safe to share between threads). The
    model's ``buckets`` become ``batch_sizes(max_batch)``: the batches it is compiled for.
    ``playlist`` (``predict.mood.read_playlist``'s tracks) gives each stream a mood player."""

    def __init__(
        self,
        model,
        make_detector: Callable[[], object],
        *,
        margin: float = 0.0,
        align: bool = ALIGN,
        levels: bool = LEVELS,
        detect_threads: int = 2,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        max_pixels: int = 40_000_000,
        max_streams: int = 8,
        playlist: dict[str, list[str]] | None = None,
        mood_window_s: float = 3.0,
    ):
        if detect_threads < 1 or max_pixels < 1:
            raise ValueError("detect_threads and max_pixels must be positive")
        self.model, self.max_pixels = model, int(max_pixels)
        model.buckets = batch_sizes(max_batch)
        self.batcher = Batcher(model.probabilities, max_batch, max_wait_ms, sizes=model.buckets)
        self._predictor = lambda detector: Predictor(
            model, detector, margin, lambda r: None, align=align, levels=levels
        )
        self._make_detector = make_detector
        self._recorder = self._predictor(None)  # makes records on the event loop's thread
        self._local = threading.local()
        self._threads = int(detect_threads)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.requests = 0
        self.attention_requests = 0
        self.playlist, self.mood_window_s = playlist, float(mood_window_s)
        self.streams = Streams(self._new_stream, max_streams)
        try:
            from amobilenet_jax.visualize import check_attention

            check_attention(model)
            self.no_attention = None
        except ValueError as e:
            self.no_attention = str(e)  # why /v1/attention is refused

    def _new_stream(self) -> Stream:
        """A stream's state: a predictor (its detector unused: faces are found on the pool) with
        predict's tracker and, with a playlist, a mood player naming tracks by route."""
        predictor = self._predictor(None)
        predictor.tracker = Tracker(max_gap_s=MAX_GAP_S, hold_s=HOLD_S)
        if self.playlist is not None:
            names = self.model.class_names
            predictor.mood = MoodPlayer(self.playlist, names, self.mood_window_s, name_track=track_route)
        return Stream(predictor)

    def start(self) -> None:
        """Starts the pool and the batcher (inside the server's event loop)."""
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="faces")
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _find(self, data: bytes, name: str, time_s: float | None = None):
        """On a pool thread: the image decoded, its faces found and cut out."""
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = self._predictor(self._make_detector())
        rgb = uploads.decode(data, self.max_pixels)
        frame = Frame(name, None, time_s, rgb, name)
        found, ids, crops = predictor.find([frame])
        return frame, found, ids, crops

    async def predict(
        self,
        data: bytes,
        name: str | None = None,
        stream: str | None = None,
        time_s: float | None = None,
        smooth_s: float = 0.0,
        hold_s: float = HOLD_S,
    ) -> list[dict]:
        """predict's records of the image in ``data`` (one a face, or a ``no face found`` record).
        As a frame of ``stream`` at ``time_s`` seconds, its faces carry the stream's track ids and
        probabilities averaged along their tracks over ``smooth_s`` seconds, and a face the stream
        found within ``hold_s`` seconds that the detector misses now is held along its track, as
        predict's video records do; a mood record follows whenever the stream's mood changes (with
        a playlist)."""
        for key, value, high in (("smooth_s", smooth_s, MAX_SMOOTH_S), ("hold_s", hold_s, MAX_HOLD_S)):
            if not 0 <= value <= high:  # NaN fails too
                raise ValueError(f"{key} {value!r}: must be in [0, {high:g}] seconds")
        self.requests += 1
        if stream is None:
            return await self._predict(data, name or UNNAMED, self._recorder)
        state = self.streams.get(stream)
        async with state.lock:  # the tracker and the mood player see the stream's frames in turn
            state.predictor.tracker.smooth_s, state.predictor.tracker.hold_s = smooth_s, hold_s
            return await self._predict(data, name or UNNAMED, state.predictor, time_s)

    async def _predict(self, data: bytes, name: str, recorder: Predictor, time_s: float | None = None) -> list[dict]:
        """The records of one image: as a stream's frame where ``recorder`` has a tracker."""
        loop = asyncio.get_running_loop()
        frame, found, ids, crops = await loop.run_in_executor(self._pool, self._find, data, name, time_s)
        if recorder.tracker is not None:  # the stream's ids, and the faces it holds
            faces, frame_ids = recorder.track(frame, found[0])
            held = faces[len(found[0]) :]
            crops = np.concatenate([crops, recorder.crops([frame], [held])]) if held else crops
            found, ids = [faces], [frame_ids]
        probabilities = await self.batcher(crops) if len(crops) else np.zeros((0, 0))
        # from here to the end no await: the records are made on the event loop's thread
        records: list[dict] = []
        recorder.emit_record = records.append
        if recorder.mood is not None:
            recorder.mood.emit = records.append
        recorder.records([frame], found, ids, probabilities)
        return records

    def _attention(self, data: bytes, face: int) -> dict:
        """On a pool thread: the image's face number ``face`` (in the records' order), its label and
        its CBAM spatial maps, each as a PNG data URL over the face crop."""
        import cv2

        from amobilenet_jax import faces as faces_lib
        from amobilenet_jax.visualize import attention, overlay

        frame, found, _, crops = self._find(data, UNNAMED)
        if not 0 <= face < len(found[0]):
            count = len(found[0])
            have = f"{count} face{'s' if count > 1 else ''}, numbered from 0" if count else "no face"
            raise uploads.UploadError(400, f"face {face}: the image has {have}")
        probabilities, maps = attention(self.model, crops[face : face + 1])
        top = int(np.argmax(probabilities[0]))
        gray = faces_lib.to_gray(crops[face])
        height, width = gray.shape[:2]
        gray = cv2.resize(gray, (width * ATTENTION_SCALE, height * ATTENTION_SCALE), interpolation=cv2.INTER_CUBIC)
        return {
            "face": face,
            "box": [int(v) for v in found[0][face].box],
            "label": self.model.class_names[top],
            "score": round(float(probabilities[0][top]), 4),
            "crop": png_data_url(gray),
            "maps": {block: png_data_url(overlay(gray, m[0])) for block, m in maps.items()},
        }

    async def attention(self, data: bytes, face: int) -> dict:
        """The attention maps of the ``face``-th face of the image in ``data`` (``/v1/attention``)."""
        if self.no_attention is not None:
            raise uploads.UploadError(404, self.no_attention)
        self.attention_requests += 1
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._attention, data, face)

    def stats(self) -> dict:
        """``/healthz``'s counts: predict requests, whose faces the batcher classifies (``requests``
        over ``model_calls`` is the batching), and attention requests, which run alone."""
        return {
            "requests": self.requests,
            "model_calls": self.batcher.calls,
            "faces": self.batcher.faces,
            "attention_requests": self.attention_requests,
        }


def png_data_url(image: np.ndarray) -> str:
    """A ``data:image/png`` URL of a uint8 image, or a float one in [0, 1]."""
    from PIL import Image

    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze()).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def describe(model) -> dict:
    """``GET /v1/model``: the class names, where the model was loaded from, the views each face is
    classified over, and the model's Valid accuracy with the file it comes from (an ``eval_valid.json``
    beside the weights, else the run's ``results.json``; null when neither is there)."""
    from amobilenet_jax.data.augment import num_views
    from amobilenet_jax.files import read_json

    run_dir = os.path.dirname(os.path.abspath(model.source))
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def shown(path: str) -> str:  # the shipped model's files inside the package, not where it is installed
        path = os.path.abspath(path)
        inside = os.path.commonpath([path, package]) == package
        return os.path.join("amobilenet_jax", os.path.relpath(path, package)) if inside else path

    valid = None
    for name in ("eval_valid.json", "results.json"):
        path = os.path.join(run_dir, name)
        try:
            result = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and result.get("split") == "valid" and "accuracy" in result:
            keys = ("accuracy", "mean_class_accuracy", "num_examples")
            valid = {**{k: result.get(k) for k in keys}, "from": shown(path)}
            break
    return {
        "class_names": list(model.class_names),
        "source": shown(model.source),
        "views": num_views(model.config),
        "valid": valid,
    }
