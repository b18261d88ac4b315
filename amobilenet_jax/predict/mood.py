"""The paper's mood player: the expression smoothed over a time window picks a track."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys

import numpy as np


class MoodPlayer:
    """The expression smoothed over a time window picks a track from ``DIR/<expression>/``."""

    def __init__(self, playlist_dir: str, class_names, window_s: float = 3.0, play: bool = False, emit=print):
        if not os.path.isdir(playlist_dir):
            raise ValueError(f"{playlist_dir}: no such playlist folder (it holds one folder per expression)")
        self.class_names = tuple(class_names)
        self.window_s = float(window_s)
        self.play = play
        self.emit = emit
        self.tracks = {}
        for name in self.class_names:
            folder = os.path.join(playlist_dir, name)
            files = sorted(f for f in os.listdir(folder) if not f.startswith(".")) if os.path.isdir(folder) else []
            self.tracks[name] = [os.path.join(folder, f) for f in files if os.path.isfile(os.path.join(folder, f))]
        if not any(self.tracks.values()):
            raise ValueError(
                f"{playlist_dir}: no tracks in any of {', '.join(n + '/' for n in self.class_names)} "
                "(one folder per expression)"
            )
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
        tracks = self.tracks[mood]
        track = tracks[self.next_track[mood] % len(tracks)] if tracks else None
        self.next_track[mood] += 1
        record = {"mood": mood, "time_s": time_s, "track": track}
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
