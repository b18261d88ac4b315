"""The paper's mood player: the expression smoothed over a time window picks a track.

``read_playlist`` reads the folders and ``MoodPlayer`` applies the window rule; ``predict``
prints (and can open) the tracks it picks, ``serve`` names them by route for the page to play."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

import numpy as np


def read_playlist(playlist_dir: str, class_names) -> dict[str, list[str]]:
    """``{expression: [track path, ...]}`` from ``DIR/<expression>/`` (sorted, hidden files left out);
    a ValueError when the folder is missing or holds no track in any expression's folder."""
    if not os.path.isdir(playlist_dir):
        raise ValueError(f"{playlist_dir}: no such playlist folder (it holds one folder per expression)")
    tracks = {}
    for name in class_names:
        folder = os.path.join(playlist_dir, name)
        files = sorted(f for f in os.listdir(folder) if not f.startswith(".")) if os.path.isdir(folder) else []
        tracks[name] = [os.path.join(folder, f) for f in files if os.path.isfile(os.path.join(folder, f))]
    if not any(tracks.values()):
        raise ValueError(
            f"{playlist_dir}: no tracks in any of {', '.join(n + '/' for n in class_names)} (one folder per expression)"
        )
    return tracks


class MoodPlayer:
    """The expression smoothed over a time window picks a track from ``DIR/<expression>/``.

    ``playlist`` is the folder, or its tracks as ``read_playlist`` gives them (a server reads the
    folder once for all its listeners). Each change of mood emits ``{"mood", "time_s", "track"}``,
    the track named by ``name_track(mood, index, path)`` (its path by default)."""

    def __init__(
        self,
        playlist: str | dict[str, list[str]],
        class_names,
        window_s: float = 3.0,
        play: bool = False,
        emit=print,
        name_track: Callable[[str, int, str], object] | None = None,
    ):
        self.class_names = tuple(class_names)
        self.tracks = read_playlist(playlist, self.class_names) if isinstance(playlist, str) else dict(playlist)
        self.window_s = float(window_s)
        self.play = play
        self.emit = emit
        self.name_track = name_track or (lambda mood, index, path: path)
        self.history = collections.deque()  # (time_s, mean probabilities of the frame's faces)
        self.mood = None
        self.next_track = dict.fromkeys(self.class_names, 0)
        self.player = shutil.which("xdg-open") or shutil.which("open")

    def update(self, time_s: float, probabilities: list[np.ndarray]) -> str | None:
        """Adds a frame; returns the new mood when the smoothed expression changed, else None."""
        if not probabilities:
            return None
        self.history.append((time_s, np.mean(probabilities, axis=0)))
        while self.history and self.history[0][0] < time_s - self.window_s:
            self.history.popleft()
        mood = self.class_names[int(np.argmax(np.mean([p for _, p in self.history], axis=0)))]
        if mood == self.mood:
            return None
        self.mood = mood
        tracks = self.tracks.get(mood, [])
        index = self.next_track[mood] % len(tracks) if tracks else None
        track = tracks[index] if tracks else None
        self.next_track[mood] += 1
        record = {
            "mood": mood,
            "time_s": time_s,
            "track": None if track is None else self.name_track(mood, index, track),
        }
        if track is None:
            record["message"] = f"no tracks in {mood}/"
        self.emit(record)
        if track and self.play:
            self._open(track)
        return mood

    def _open(self, track: str) -> None:
        if sys.platform.startswith("win"):
            os.startfile(track)  # noqa: S606 - the user's own file, with the system's player
        elif self.player:
            subprocess.Popen([self.player, track], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            print("predict: --play found no system player (xdg-open or open); printing tracks only", file=sys.stderr)
            self.play = False
