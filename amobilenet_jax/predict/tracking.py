"""Faces over time: each face of a video keeps an id across frames, and its expression can be
smoothed over a time window.

A track is matched to a face of the next frame by the overlap (IoU) of the face's box with
the track's box moved on by its last velocity, both boxes grown to ``GROW`` times their size
about their centres (so that a face that moved by most of its width between two detections, as
with ``--detect_every``, still overlaps its track), one face per track
(``linear_sum_assignment`` on the overlaps); a face that matches no track starts one; a track
not seen for ``max_gap_s`` ends. Moving the box on by its velocity is what keeps two faces
that cross apart.

Between two frames the detector looked at (``predict --detect_every N``), ``carried`` gives the
faces of the last detected frame moved on by their velocities, under the same ids.

A face the detector found and then misses (a small or poor face's score flickers about the
threshold from frame to frame) can be held: with ``hold_s`` > 0, ``held`` gives the tracks missed
at a detection but seen within ``hold_s`` seconds before it, moved on by their velocities, and
``carried`` keeps carrying them until a detection finds them again or the hold runs out.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from amobilenet_jax.faces import box_iou as iou

GROW = 2.0


def grown(box, factor: float = GROW) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return x - (factor - 1) * w / 2, y - (factor - 1) * h / 2, factor * w, factor * h


@dataclasses.dataclass
class Track:
    id: int
    box: tuple[float, float, float, float]
    time_s: float
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, pixels per second

    def predicted(self, time_s: float) -> tuple[float, float, float, float]:
        dt = time_s - self.time_s
        x, y, w, h = self.box
        return x + self.velocity[0] * dt, y + self.velocity[1] * dt, w, h


class Tracker:
    """Track ids for the faces of successive frames; ``smooth_s`` > 0 averages each track's
    probabilities over that many seconds."""

    def __init__(self, smooth_s: float = 0.0, max_gap_s: float = 1.0, min_iou: float = 0.2, hold_s: float = 0.0):
        self.smooth_s, self.max_gap_s, self.min_iou = float(smooth_s), float(max_gap_s), float(min_iou)
        self.hold_s = min(float(hold_s), self.max_gap_s)
        self.tracks: list[Track] = []
        self.next_id = 0
        self.last_update_s: float | None = None
        # (time_s, probabilities) per track id; kept apart from the tracks, because predict asks for
        # a batch's ids first and smooths afterwards, when a track may have ended in a later frame
        self.histories: dict[int, collections.deque] = {}

    def update(self, time_s: float, boxes: list) -> list[int]:
        """The track id of each box of the frame at ``time_s`` (in order)."""
        from scipy.optimize import linear_sum_assignment

        self.tracks = [t for t in self.tracks if time_s - t.time_s <= self.max_gap_s]
        self.last_update_s = time_s
        ids: list[int | None] = [None] * len(boxes)
        if self.tracks and boxes:
            overlap = np.array([[iou(grown(t.predicted(time_s)), grown(b)) for b in boxes] for t in self.tracks])
            rows, cols = linear_sum_assignment(-overlap)
            for r, c in zip(rows, cols):
                if overlap[r, c] >= self.min_iou:
                    self._move(self.tracks[r], boxes[c], time_s)
                    ids[c] = self.tracks[r].id
        for i, box in enumerate(boxes):
            if ids[i] is None:
                track = Track(self.next_id, tuple(float(v) for v in box), time_s)
                self.tracks.append(track)
                self.next_id += 1
                ids[i] = track.id
        return ids  # type: ignore[return-value]

    def carried(self, time_s: float) -> list[tuple[int, tuple[float, float, float, float]]]:
        """(id, box) of each face of the last updated frame (found there, or held), its box moved
        on to ``time_s`` by its velocity; the tracks themselves are left as they are (velocities
        come from detections)."""
        if self.last_update_s is None:
            return []
        return [(t.id, t.predicted(time_s)) for t in self.tracks if self.last_update_s - t.time_s <= self.hold_s]

    def held(self, time_s: float) -> list[tuple[int, tuple[float, float, float, float]]]:
        """(id, box moved on to ``time_s``) of each track that the update at ``time_s`` did not
        find but that was found within ``hold_s`` seconds before it (none while ``hold_s`` is 0)."""
        return [(t.id, t.predicted(time_s)) for t in self.tracks if 0 < time_s - t.time_s <= self.hold_s]

    @staticmethod
    def _move(track: Track, box, time_s: float) -> None:
        dt = time_s - track.time_s
        if dt > 0:
            (x0, y0, w0, h0), (x1, y1, w1, h1) = track.box, box
            track.velocity = ((x1 + w1 / 2 - x0 - w0 / 2) / dt, (y1 + h1 / 2 - y0 - h0 / 2) / dt)
        track.box, track.time_s = tuple(float(v) for v in box), time_s

    def smooth(self, track_id: int, time_s: float, probabilities: np.ndarray) -> np.ndarray:
        """Adds a frame's probabilities to the track; returns their mean over the last ``smooth_s``
        seconds (the frame's own when smoothing is off)."""
        if self.smooth_s <= 0:
            return probabilities
        history = self.histories.setdefault(track_id, collections.deque())
        history.append((time_s, np.asarray(probabilities, np.float64)))
        while history[0][0] < time_s - self.smooth_s:
            history.popleft()
        for old in [i for i, h in self.histories.items() if h[-1][0] < time_s - self.smooth_s - self.max_gap_s]:
            del self.histories[old]  # tracks long ended
        return np.mean([p for _, p in history], axis=0).astype(np.float32)
