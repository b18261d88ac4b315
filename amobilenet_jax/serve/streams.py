"""A page's camera or video as a stream: predict's tracker (face ids across frames, smoothing)
and the mood player, kept per stream id between the requests that carry its frames.

Bounded: at most ``max_streams`` streams, the least recently used dropped when another starts,
and a stream idle for ``IDLE_S`` forgotten. A stream keeps boxes and probabilities, never an image.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable

STREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
IDLE_S = 60.0
# The page sends a stream's next frame when the last is answered, so frames can be further apart
# than in a video file: a track lives on this long unseen (predict's own default is 1 s).
MAX_GAP_S = 3.0


class Streams:
    """``streams.get(stream_id)`` gives that stream's state, made by ``make()`` on first use."""

    def __init__(self, make: Callable[[], object], max_streams: int = 8, idle_s: float = IDLE_S, clock=time.monotonic):
        if max_streams < 1:
            raise ValueError("max_streams must be positive")
        self.make, self.max_streams, self.idle_s, self.clock = make, int(max_streams), float(idle_s), clock
        self._streams: collections.OrderedDict[str, tuple[float, object]] = collections.OrderedDict()

    def get(self, stream_id: str):
        if not STREAM_ID.fullmatch(stream_id):
            raise ValueError("a stream id is 1 to 64 letters, digits, '-' or '_'")
        now = self.clock()
        while self._streams and now - next(iter(self._streams.values()))[0] > self.idle_s:
            self._streams.popitem(last=False)  # idle too long (kept in order of last use)
        state = self._streams.pop(stream_id, (None, None))[1]
        if state is None:
            while len(self._streams) >= self.max_streams:
                self._streams.popitem(last=False)
            state = self.make()
        self._streams[stream_id] = (now, state)
        return state

    def __len__(self) -> int:
        return len(self._streams)
