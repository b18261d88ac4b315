"""amobilenet_jax.analyze and to_dataframe: predict's records in Python, README's snippet as written."""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

import amobilenet_jax
from amobilenet_jax import inference
from tests import media
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(inference.SHIPPED_MODEL, "weights.msgpack")),
    reason="the shipped FERPlus model is not in this checkout",
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    Image.fromarray(media.astronaut()).save(root / "photo.jpg")
    media.write_crossing_video(str(root / "crossing.mp4"), frames=8)
    (root / "notes.txt").write_text("not an image")
    return root


def test_analyze_returns_the_records_predict_prints(python, inputs):
    """A photo, a video and an unreadable file: the records equal predict's lines, field for field."""
    names = [str(inputs / n) for n in ("photo.jpg", "crossing.mp4", "notes.txt")]
    done = subprocess.run(
        [python, "-m", "amobilenet_jax.predict", *names, "--smooth_s", "0.5", "--no_progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    records = amobilenet_jax.analyze(names, smooth_s=0.5)
    key = lambda r: (r["file"], r.get("frame") or 0, r.get("face") or 0)  # noqa: E731 - predict: photos, then videos
    assert sorted(records, key=key) == sorted(printed, key=key)
    video = [r for r in records if r["file"].endswith("crossing.mp4") and r.get("face") is not None]
    assert all(isinstance(r["track"], int) for r in video) and {r["frame"] for r in video} == set(range(8))
    assert [r["file"] for r in records if "error" in r] == [names[2]]


def test_arrays_and_pil_images_give_the_photos_records(inputs):
    (by_path,) = amobilenet_jax.analyze(inputs / "photo.jpg")  # a pathlib.Path too
    rgb = np.asarray(Image.open(inputs / "photo.jpg").convert("RGB"))
    by_array, by_pil = amobilenet_jax.analyze([rgb, Image.open(inputs / "photo.jpg")])
    for record, name in ((by_array, "<image 0>"), (by_pil, "<image 1>")):
        assert record["file"] == name
        assert {k: v for k, v in record.items() if k != "file"} == {k: v for k, v in by_path.items() if k != "file"}
    (gray,) = amobilenet_jax.analyze(rgb.mean(axis=-1).astype(np.uint8))
    assert gray["file"] == "<image>" and gray["face"] == 0
    (nothing,) = amobilenet_jax.analyze(np.zeros((120, 160, 3), np.uint8))
    assert nothing["message"] == "no face found"


def test_bad_input_and_unknown_options_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^<image>: an image array is uint8 .* got float64 \(4, 4, 3\)$"):
        amobilenet_jax.analyze(np.zeros((4, 4, 3)))
    with pytest.raises(TypeError, match="unknown options \\['smoothing'\\]"):
        amobilenet_jax.analyze(np.zeros((4, 4, 3), np.uint8), smoothing=1.0)
    with pytest.raises(ValueError, match="must be positive"):
        amobilenet_jax.analyze(np.zeros((4, 4, 3), np.uint8), every=0)
    with pytest.raises(ValueError, match=r"hold_s must be in \[0, 1\] seconds"):
        amobilenet_jax.analyze(np.zeros((4, 4, 3), np.uint8), hold_s=-1)
    with pytest.raises(AttributeError):
        amobilenet_jax.analyse  # noqa: B018 - a misspelt name is not found


def test_to_dataframe_has_predicts_csv_columns(inputs):
    records = amobilenet_jax.analyze([inputs / "photo.jpg", np.zeros((120, 160, 3), np.uint8)])
    table = amobilenet_jax.to_dataframe(records)
    classes = inference.load_model().class_names
    head = ["file", "frame", "time_s", "face", "track", "x", "y", "w", "h", "score", "label", "detector_score"]
    assert list(table.columns[:12]) == head
    assert list(table.columns[12:]) == [f"p_{c}" for c in classes] + ["message", "error"]
    assert len(table) == 2 and table["label"][0] == records[0]["label"]
    assert list(table.loc[0, ["x", "y", "w", "h"]]) == records[0]["box"]
    assert table["message"][1] == "no face found"


def test_readme_python_snippet_runs_as_written(python, inputs):
    with open(os.path.join(REPO, "README.md")) as f:
        (snippet,) = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    done = subprocess.run(
        [python, "-c", snippet + "\nprint(len(table), list(table.columns[:3]))"],
        cwd=inputs,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    *_, first, rows = done.stdout.splitlines()
    label, score = first.split()
    assert label in inference.load_model().class_names and 0 < float(score) <= 1
    assert rows == "1 ['file', 'frame', 'time_s']"
