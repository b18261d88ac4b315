"""What the routes call: an upload decoded and its faces found on a thread pool (one detector a
thread), their crops classified by the batcher with other requests' faces, and predict's records
made from them (``predict.Predictor``'s own ``find`` and ``records``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable

import numpy as np

from amobilenet_jax.predict.media import Frame
from amobilenet_jax.predict.pipeline import ALIGN, Predictor
from amobilenet_jax.serve import uploads
from amobilenet_jax.serve.batcher import Batcher, batch_sizes

UNNAMED = "<upload>"  # the records' "file" when the client gave no file name


class Service:
    """A model and a face detector factory put behind the routes. ``make_detector()`` makes the
    detector of one pool thread (OpenCV's detectors are not safe to share between threads). The
    model's ``buckets`` become ``batch_sizes(max_batch)``: the batches it is compiled for."""

    def __init__(
        self,
        model,
        make_detector: Callable[[], object],
        *,
        margin: float = 0.0,
        align: bool = ALIGN,
        detect_threads: int = 2,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        max_pixels: int = 40_000_000,
    ):
        if detect_threads < 1 or max_pixels < 1:
            raise ValueError("detect_threads and max_pixels must be positive")
        self.model, self.max_pixels = model, int(max_pixels)
        model.buckets = batch_sizes(max_batch)
        self.batcher = Batcher(model.probabilities, max_batch, max_wait_ms, sizes=model.buckets)
        self._predictor = lambda detector: Predictor(model, detector, margin, lambda r: None, align=align)
        self._make_detector = make_detector
        self._recorder = self._predictor(None)  # makes records on the event loop's thread
        self._local = threading.local()
        self._threads = int(detect_threads)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.requests = 0

    def start(self) -> None:
        """Starts the pool and the batcher (inside the server's event loop)."""
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="faces")
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _find(self, data: bytes, name: str):
        """On a pool thread: the image decoded, its faces found and cut out."""
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = self._predictor(self._make_detector())
        rgb = uploads.decode(data, self.max_pixels)
        frame = Frame(name, None, None, rgb, name)
        found, ids, crops = predictor.find([frame])
        return frame, found, ids, crops

    async def predict(self, data: bytes, name: str | None = None) -> list[dict]:
        """predict's records of the image in ``data`` (one a face, or a ``no face found`` record)."""
        self.requests += 1
        loop = asyncio.get_running_loop()
        frame, found, ids, crops = await loop.run_in_executor(self._pool, self._find, data, name or UNNAMED)
        probabilities = await self.batcher(crops) if len(crops) else np.zeros((0, 0))
        records: list[dict] = []
        self._recorder.emit_record = records.append  # no await between this and its use
        self._recorder.records([frame], found, ids, probabilities)
        return records

    def stats(self) -> dict:
        return {"requests": self.requests, "model_calls": self.batcher.calls, "faces": self.batcher.faces}


def describe(model) -> dict:
    """``GET /v1/model``: the class names, where the model was loaded from, the views each face is
    classified over, and the model's Valid accuracy with the file it comes from (an ``eval_valid.json``
    beside the weights, else the run's ``results.json``; null when neither is there)."""
    from amobilenet_jax.data.augment import num_views
    from amobilenet_jax.files import read_json

    run_dir = os.path.dirname(os.path.abspath(model.source))
    valid = None
    for name in ("eval_valid.json", "results.json"):
        path = os.path.join(run_dir, name)
        try:
            result = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and result.get("split") == "valid" and "accuracy" in result:
            keys = ("accuracy", "mean_class_accuracy", "num_examples")
            valid = {**{k: result.get(k) for k in keys}, "from": path}
            break
    return {
        "class_names": list(model.class_names),
        "source": model.source,
        "views": num_views(model.config),
        "valid": valid,
    }
