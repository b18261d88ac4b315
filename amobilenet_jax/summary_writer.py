"""TensorBoard event files through tensorboardX, with clu's MetricWriter shape.

``clu.metric_writers`` writes TensorBoard files through TensorFlow, which the
default install must not pull in; this writer keeps clu's method names
(``write_scalars``, ``write_images``, ``write_hparams``) so swapping is a one-liner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.summary import hparams as hparams_summary


class TensorBoardWriter:
    def __init__(self, logdir: str, enabled: bool = True, purge_step: int | None = None):
        """``purge_step``: the first step a resumed run logs again (one past its checkpoint's);
        TensorBoard (and ``read_scalars``) then drop what the interrupted attempt logged from that
        step on, instead of showing the steps between its last checkpoint and its death twice."""
        # Only one process of a multi-host job writes; the others get a no-op writer.
        self._writer = SummaryWriter(logdir, purge_step=purge_step) if enabled else None

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        if self._writer is None:
            return
        for key, value in scalars.items():
            self._writer.add_scalar(key, float(np.asarray(value)), global_step=int(step))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Each value is ``[H, W, C]`` or ``[N, H, W, C]``, uint8 or float in [0, 1]."""
        if self._writer is None:
            return
        for key, value in images.items():
            value = np.asarray(value)
            if value.ndim == 3:
                self._writer.add_image(key, value, global_step=int(step), dataformats="HWC")
            else:
                self._writer.add_images(key, value, global_step=int(step), dataformats="NHWC")

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        if self._writer is None:
            return
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        # Written into this run's own event file (add_hparams would open a sub-run).
        for summary in hparams_summary(flat, {}):
            self._writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_events(path: str):
    """The events of one TensorBoard event file, in order (no TensorFlow needed). A torn last
    record (its writer was killed in the middle of it) or a damaged one ends the file there."""
    import struct

    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 12 <= len(data):  # TFRecord framing: length, its crc, payload, its crc
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        payload = data[pos + 12 : pos + 12 + length]
        if (
            struct.unpack("<I", data[pos + 8 : pos + 12])[0] != masked_crc32c(header)
            or pos + 16 + length > len(data)
            or struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] != masked_crc32c(payload)
        ):
            return  # nothing after a torn or damaged record in this file can be trusted
        pos += 16 + length
        event = event_pb2.Event()
        event.ParseFromString(payload)
        yield event


def scalar_log(logdir: str) -> list[tuple[str | None, int, float | None, float]]:
    """Every scalar in the event files of ``logdir`` as ``(tag, step, value, wall_time)``, in the
    order written, and each resumed attempt's purge marker (written by
    ``TensorBoardWriter(purge_step=...)``) as ``(None, step, None, wall_time)`` where it began.
    A file's torn last record (its writer was killed in the middle of it) ends that file."""
    import glob
    import os

    from tensorboardX.proto import event_pb2

    log = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in read_events(path):
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                log.append((None, int(event.step), None, float(event.wall_time)))
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    log.append((value.tag, int(event.step), float(value.simple_value), float(event.wall_time)))
    return log


def read_scalars(logdir: str, wall_time: bool = False) -> dict[str, list[tuple]]:
    """tag -> [(step, value)] from the event files in ``logdir`` (no TensorFlow needed);
    ``wall_time``: [(step, value, seconds since the epoch when it was written)].

    Read as TensorBoard reads them: a file's torn last record ends that file instead of failing,
    and a resumed run's purge marker drops the points the killed attempt logged at or after the
    step it resumes from, so each step is counted once."""
    scalars: dict[str, list[tuple]] = {}
    for tag, step, value, wall in scalar_log(logdir):
        if tag is None:  # a resumed attempt's purge marker
            scalars = {t: [p for p in points if p[0] < step] for t, points in scalars.items()}
        else:
            scalars.setdefault(tag, []).append((step, value, wall) if wall_time else (step, value))
    return {tag: sorted(points) for tag, points in scalars.items() if points}
