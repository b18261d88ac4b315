"""visualize: CBAM's spatial attention over every face, as images."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from amobilenet_jax import files, inference, steps, visualize
from tests import media
from tests.conftest import REPO


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(inference.SHIPPED_MODEL, "weights.msgpack")), reason="no shipped model here"
)
def test_attention_images_for_each_face_and_a_grid(python, tmp_path):
    Image.fromarray(media.group_photo()).save(tmp_path / "group.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "blank.png")
    out = tmp_path / "maps"
    done = subprocess.run(
        [python, "-m", "amobilenet_jax.visualize", str(tmp_path / "group.png"), str(tmp_path / "blank.png"),
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    faces = [r for r in lines if r.get("face") is not None]
    assert [r["face"] for r in faces] == [0, 1, 2]
    assert {"file": str(tmp_path / "blank.png"), "face": None, "message": "no face found"} in lines
    for r in faces:
        image = np.asarray(Image.open(r["image"]))
        assert image.ndim == 3 and image.shape[1] > image.shape[0]  # the crop and one panel per CBAM block
    grid = np.asarray(Image.open(out / "attention_grid.png"))
    single = np.asarray(Image.open(faces[0]["image"]))
    assert grid.shape[0] > 2.5 * single.shape[0]  # three rows
    assert "3 faces" in done.stderr


def test_overlay_puts_the_maps_peak_where_it_is():
    face = np.full((48, 48), 128, np.uint8)
    amap = np.zeros((6, 6), np.float32)
    amap[1, 4] = 1.0  # top right
    rgb = visualize.overlay(face, amap)
    assert rgb.shape == (48, 48, 3) and 0.0 <= rgb.min() and rgb.max() <= 1.0
    red_minus_blue = rgb[:, :, 0] - rgb[:, :, 2]
    y, x = np.unravel_index(np.argmax(red_minus_blue), red_minus_blue.shape)
    assert y < 16 and x > 28


def test_a_model_without_cbam_is_a_clear_error(tiny_config, tmp_path):
    from amobilenet_jax import weights

    config = tiny_config.copy_and_resolve_references()
    config.model.name = "mobilenet_v1"
    config.model.cbam = False
    state = steps.state_without_data(config)
    weights.save(str(tmp_path / "weights.msgpack"), state.params, state.batch_stats)
    files.write_json_atomic(str(tmp_path / "config.json"), json.loads(config.to_json()))
    args = visualize.parse_args(["x.png", "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "weights.msgpack")])
    with pytest.raises(ValueError, match="no CBAM blocks"):
        visualize.run(args)
