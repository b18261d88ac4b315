"""predict --timeline: each tracked face's series from the records, and the figure drawn from them."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from amobilenet_jax.predict import cli, timeline


def _record(file, track, time_s, happy, face=0):
    return {
        "file": file,
        "frame": None if time_s is None else int(time_s * 10),
        "time_s": time_s,
        "face": face,
        "track": track,
        "label": "happiness" if happy > 0.5 else "neutral",
        "probabilities": {"neutral": round(1 - happy, 4), "happiness": happy},
    }


def test_series_groups_records_by_file_and_track_in_order_of_appearance():
    records = [
        _record("a.mp4", 0, 0.0, 0.9),
        _record("a.mp4", 1, 0.0, 0.1, face=1),
        {"file": "a.mp4", "frame": 1, "time_s": 0.1, "face": None, "message": "no face found"},
        _record("a.mp4", 0, 0.2, 0.8),
        _record("photo.jpg", None, None, 0.7),  # a photo has no track
        {"time_s": 0.3, "mood": "happiness", "track": "songs/happiness/a.mp3"},  # a mood player's line
        _record("b.mp4", 0, 0.0, 0.3),
    ]
    got = timeline.series(records)
    assert [(t["file"], t["track"]) for t in got] == [("a.mp4", 0), ("a.mp4", 1), ("b.mp4", 0)]
    assert got[0]["time_s"] == [0.0, 0.2]
    assert got[0]["probabilities"] == {"neutral": [0.1, 0.2], "happiness": [0.9, 0.8]}


def test_draw_writes_one_panel_a_track_whole(tmp_path):
    records = [_record("a.mp4", t, i / 10, (i % 5) / 5) for i in range(20) for t in (0, 1, 2)]
    one = tmp_path / "one.png"
    assert timeline.draw(records[::3], str(one)) == 1
    three = tmp_path / "three.svg"
    assert timeline.draw(records, str(three), smooth_s=0.5) == 3
    assert "face track 2" in three.read_text() and "averaged over 0.5 s" in three.read_text()
    empty = tmp_path / "none.png"
    assert timeline.draw([], str(empty)) == 0
    with Image.open(one) as a, Image.open(empty) as b:
        assert a.format == b.format == "PNG"
    assert sorted(os.listdir(tmp_path)) == ["none.png", "one.png", "three.svg"]  # no temporary left


def test_timeline_needs_a_figure_format():
    with pytest.raises(SystemExit):
        cli.parse_args(["clip.mp4", "--timeline", "timeline.txt"])
    assert cli.parse_args(["clip.mp4", "--timeline", "t.pdf"]).timeline == "t.pdf"
