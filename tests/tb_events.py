"""Reads TensorBoard event files (TFRecord framing) without TensorFlow, for tests."""

import glob
import os
import struct

from tensorboardX.proto import event_pb2


def read_events(logdir: str) -> list:
    events = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            record = data[pos + 12 : pos + 12 + length]
            pos += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            events.append(event)
    return events


def tags(logdir: str) -> dict[str, list]:
    """tag -> [(step, kind)] where kind is "scalar" or "image"."""
    found: dict[str, list] = {}
    for event in read_events(logdir):
        for value in event.summary.value:
            kind = "image" if value.HasField("image") else "scalar"
            found.setdefault(value.tag, []).append((event.step, kind))
    return found
