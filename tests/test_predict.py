"""predict: every face in photos, folders and videos, on real faces from scikit-image's photos."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from amobilenet_jax import faces, files, inference, predict, steps
from amobilenet_jax.data import augment
from tests import media
from tests.conftest import REPO

SHIPPED = os.path.isfile(os.path.join(inference.SHIPPED_MODEL, "weights.msgpack"))
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="the shipped FERPlus model is not in this checkout")


def run_predict(python, *args, cwd=REPO):
    done = subprocess.run(
        [python, "-m", "amobilenet_jax.predict", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done, lines


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(media.astronaut()).save(root / "photo.jpg")
    folder = root / "folder"
    (folder / "nested").mkdir(parents=True)
    Image.fromarray(media.group_photo()).save(folder / "nested" / "group.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")  # no face
    (folder / "notes.txt").write_text("not an image")
    return root


@needs_shipped
def test_photo_and_folder_with_the_default_model(python, photos, tmp_path):
    """No model argument: the shipped model. Every face one line; no face and unreadable files one line each."""
    out, table = tmp_path / "annotated", tmp_path / "faces.csv"
    done, lines = run_predict(
        python, str(photos / "photo.jpg"), str(photos / "folder"), "--csv", str(table), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    by_file = {}
    for line in lines:
        by_file.setdefault(os.path.relpath(line["file"], photos), []).append(line)
    assert set(by_file) == {"photo.jpg", "folder/coffee.png", "folder/notes.txt", "folder/nested/group.png"}

    (astronaut,) = by_file["photo.jpg"]  # exactly one face
    classes = inference.load_model().class_names
    assert astronaut["frame"] is None and astronaut["time_s"] is None and astronaut["face"] == 0
    x, y, w, h = astronaut["box"]
    fx, fy, fw, fh = media.ASTRONAUT_FACE
    assert abs(x - fx) < 12 and abs(y - fy) < 12 and abs(w - fw) < 16  # original pixels
    assert set(astronaut["probabilities"]) == set(classes)
    assert sum(astronaut["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert astronaut["label"] == max(astronaut["probabilities"], key=astronaut["probabilities"].get)
    assert astronaut["score"] == astronaut["probabilities"][astronaut["label"]]

    group = by_file["folder/nested/group.png"]
    assert [r["face"] for r in group] == [0, 1, 2]  # three faces, largest first
    widths = [r["box"][2] for r in group]
    assert widths == sorted(widths, reverse=True) and widths[-1] > 0
    assert by_file["folder/coffee.png"] == [
        {
            "file": str(photos / "folder" / "coffee.png"),
            "frame": None,
            "time_s": None,
            "face": None,
            "message": "no face found",
        }
    ]
    (bad,) = by_file["folder/notes.txt"]
    assert "not a readable image" in bad["error"]

    assert "img" in done.stderr  # the progress bar
    assert "5 images/frames" not in done.stderr and "3 images/frames, 4 faces, 1 unreadable" in done.stderr
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(lines) and {r["label"] for r in rows if r["face"]} <= set(classes)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".predict-")]  # the temporary table was renamed
    annotated = np.asarray(Image.open(out / "photo.jpg"))
    assert annotated.shape == media.astronaut().shape
    assert np.abs(annotated.astype(int) - media.astronaut()).max() > 100  # a box was drawn
    assert (out / "folder" / "nested" / "group.png").exists()


@needs_shipped
def test_no_align_and_no_levels_cut_the_face_out_as_found(python, tmp_path):
    """The astronaut turned by 20 degrees and dimmed: by default predict levels her eyes before
    the crop and then the crop's light and detail; with --no_align its probabilities are those of
    the crop cut from the box as found, levelled; --no_levels leaves the crop as it is."""
    image = media.astronaut()
    turn = cv2.getRotationMatrix2D((image.shape[1] / 2, image.shape[0] / 2), 20, 1.0)
    turned = cv2.warpAffine(image, turn, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    turned = (turned * 0.4).astype(np.uint8)  # a dim photo
    Image.fromarray(turned).save(tmp_path / "turned.png")
    done, (record,) = run_predict(python, str(tmp_path / "turned.png"), "--no_align")
    assert done.returncode == 0, done.stderr[-2000:]

    model = inference.load_model()
    (face,) = faces.make_detector("retinaface").detect(turned)
    assert record["box"] == list(face.box) and abs(faces.eye_angle(face.landmarks)) > 10
    geometry = faces.CROP_GEOMETRY["retinaface"]
    raw = faces.crop(turned, face.box, model.native_shape, geometry=geometry)
    assert raw.mean() < faces.LIGHT_MEAN_RANGE[0]  # dim: levelling moves it
    as_found, levelled_eyes = (
        model.probabilities(faces.level(
            faces.crop(turned, face.box, model.native_shape, geometry=geometry, landmarks=landmarks)
        )[None])[0]
        for landmarks in (None, face.landmarks)
    )  # fmt: skip
    got = np.array([record["probabilities"][c] for c in model.class_names])
    np.testing.assert_allclose(got, as_found, atol=2e-4)
    assert np.abs(levelled_eyes - as_found).max() > 5e-4  # the default, levelled crop reads differently
    assert np.abs(model.probabilities(raw[None])[0] - as_found).max() > 1e-3  # and so does the light as it was
    # --no_crops: the same face on itself and its mirror only, not on the shipped test-time crops;
    # --no_levels: the crop's light as cut out.
    done, (two_views,) = run_predict(python, str(tmp_path / "turned.png"), "--no_align", "--no_crops", "--no_levels")
    assert done.returncode == 0, done.stderr[-2000:]
    assert model.config.eval_crops == 5
    plain = inference.load_model()
    plain.config.eval_crops = 0  # before its first forward pass, as predict sets it
    want = plain.probabilities(raw[None])[0]
    got = np.array([two_views["probabilities"][c] for c in model.class_names])
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert np.abs(want - as_found).max() > 1e-4  # the crops and the light changed the answer


@needs_shipped
def test_another_detector_is_chosen_by_name(python, photos):
    """--detector ssd (OpenCV's res10 SSD, a default dependency): the astronaut's one face, none in the coffee."""
    done, lines = run_predict(python, str(photos / "photo.jpg"), str(photos / "folder" / "coffee.png"), "--detector",
                              "ssd")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "faces by OpenCV's res10 SSD" in done.stderr
    astronaut, coffee = lines
    x, y, w, h = astronaut["box"]
    fx, fy, fw, fh = media.ASTRONAUT_FACE
    assert abs(x + w / 2 - fx - fw / 2) < 16 and abs(y + h / 2 - fy - fh / 2) < 16 and abs(w - fw) < 30
    assert coffee["face"] is None and coffee["message"] == "no face found"


@needs_shipped
def test_small_faces_finds_a_face_the_default_misses(python, tmp_path):
    Image.fromarray(media.small_face_frame()).save(tmp_path / "small.png")
    done, lines = run_predict(python, str(tmp_path / "small.png"), "--small_faces", "--min_face", "12", "--no_progress")
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = lines
    x, y, width = media.SMALL_FACE_AT
    bx, by, bw, bh = record["box"]
    assert record["face"] == 0 and x <= bx and bx + bw <= x + width and y <= by and by + bh <= y + width
    assert faces.make_detector("retinaface", min_face=12).detect(media.small_face_frame()) == []  # the default


def test_video_every_nth_frame_annotated_copy_and_mood_player(python, tmp_path):
    video = tmp_path / "clip.mp4"
    media.write_video(str(video), frames=30, face_from=10)
    playlists = tmp_path / "music"
    classes = inference.load_model().class_names
    for name in classes:
        (playlists / name).mkdir(parents=True)
        for track in ("a.mp3", "b.mp3"):
            (playlists / name / track).write_bytes(b"")
    done, lines = run_predict(
        python, str(video), "--every", "3", "--out", str(tmp_path / "out"), "--playlist_dir", str(playlists)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frames = [r for r in lines if "frame" in r]
    assert [r["frame"] for r in frames] == list(range(0, 30, 3))
    assert all(r["time_s"] == pytest.approx(r["frame"] / 25.0) for r in frames)
    assert all(r["face"] is None for r in frames if r["frame"] < 10)  # no face yet: one line per frame
    faced = [r for r in frames if r["frame"] >= 12]
    assert faced and all(r["face"] == 0 for r in faced)
    moods = [r for r in lines if "mood" in r]
    assert moods, done.stdout[-2000:]
    labels = [r["label"] for r in faced]
    assert moods[0]["mood"] in labels and moods[0]["time_s"] >= 0.48  # the first frame with a face: frame 12
    assert os.path.dirname(moods[0]["track"]) == str(playlists / moods[0]["mood"])
    assert "frame/s]" in done.stderr  # progress bar over the video's frames
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    capture.release()


@needs_shipped
def test_two_faces_that_cross_keep_their_tracks(python, tmp_path):
    video = tmp_path / "crossing.mp4"
    media.write_crossing_video(str(video))
    timeline = tmp_path / "timeline.png"
    done, lines = run_predict(
        python, str(video), "--smooth_s", "0.5", "--detect_every", "2", "--no_progress", "--timeline", str(timeline)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    faces = [r for r in lines if r.get("face") is not None]
    assert {r["track"] for r in faces} == {0, 1}
    with Image.open(timeline) as figure:  # one panel a track: two panels
        assert figure.format == "PNG" and figure.height > 400
    assert f"timeline in {timeline}" in done.stderr
    assert {r["frame"] % 2 for r in faces if r["detector_score"] is None} == {1}  # carried between detections
    for track in (0, 1):
        xs = [r["box"][0] for r in faces if r["track"] == track]
        ys = {r["box"][1] < 200 for r in faces if r["track"] == track}
        assert len(xs) >= 12 and len(ys) == 1  # one face per track: always in its own half
        assert xs == sorted(xs) or xs == sorted(xs, reverse=True)  # and moving one way
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=2e-3) for r in faces)


def test_bad_model_and_camera_are_one_line_errors(python, tmp_path):
    done, _ = run_predict(python, "--weights", str(tmp_path / "missing.msgpack"), "x.jpg")
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1] == f"predict: error: {tmp_path / 'missing.msgpack'}: no such weights file"
    )
    done, _ = run_predict(python)
    assert done.returncode == 2 and "name at least one image" in done.stderr
    done, _ = run_predict(python, "--hold_s", "2", "x.jpg")
    assert done.returncode == 2 and "--hold_s 2: must be in [0, 1]" in done.stderr.strip().splitlines()[-1]
    done, _ = run_predict(python, "--detect_every", "0", "x.jpg")
    assert done.returncode == 2 and "--detect_every 0: must be >= 1" in done.stderr.strip().splitlines()[-1]


@needs_shipped
def test_a_camera_that_cannot_open_is_one_line_and_a_failure(python):
    done, lines = run_predict(python, "--camera", "7")
    assert done.returncode == 1
    assert lines == [{"file": "camera:7", "error": "cannot open the camera 7"}]


class _CountingModel:
    """Stands in for inference.Model: counts calls, returns fixed probabilities."""

    class_names = ("a", "b")
    native_shape = (48, 48, 1)

    def __init__(self):
        self.calls = []

    def probabilities(self, crops):
        self.calls.append(crops.shape)
        return np.tile([[0.25, 0.75]], (len(crops), 1)).astype(np.float32)


class _ScriptedDetector:
    """A detector whose faces per call are given; it records the frames it was asked about."""

    def __init__(self, boxes):
        self.boxes, self.asked = boxes, []

    def detect(self, rgb):
        self.asked.append(int(rgb[0, 0, 0]))  # each frame's number is written in its corner
        return [faces.Face(box, 0.9) for box in self.boxes(int(rgb[0, 0, 0]))]


def _numbered_frames(count: int) -> list:
    """A video's frames at 10 a second, each with its number written in its corner."""
    frames = []
    for n in range(count):
        rgb = np.zeros((200, 300, 3), np.uint8)
        rgb[0, 0] = n
        frames.append(predict.Frame("clip.mp4", n, n / 10, rgb, "clip.mp4"))
    return frames


def test_the_detector_looks_at_every_nth_video_frame_once_a_face_is_tracked():
    from amobilenet_jax.predict.tracking import Tracker

    detector = _ScriptedDetector(lambda n: [] if n < 2 else [(10 * n, 40, 60, 60)])  # a face from frame 2, moving
    predictor = predict.Predictor(_CountingModel(), detector, 0.0, lambda r: None, detect_every=3)
    predictor.tracker = Tracker()
    frames = _numbered_frames(10)
    records = [r for batch in (frames[:4], frames[4:]) for r in predictor.run_batch(batch)]
    assert detector.asked == [0, 1, 2, 5, 8]  # every frame until the face is found, then every 3rd
    assert [len(r) for r in records] == [0, 0] + [1] * 8
    carried = [r[0] for n, r in enumerate(records) if n in (3, 4, 6, 7, 9)]
    assert all(r["detector_score"] is None and r["track"] == 0 for r in carried)
    assert [r["box"][0] for r in carried] == [20, 20, 60, 70, 90]  # moved on by the velocity of its detections
    assert all(r[0]["detector_score"] == 0.9 for n, r in enumerate(records) if n in (2, 5, 8))


def test_a_held_face_missed_by_the_detector_stays_until_its_hold_runs_out_or_it_leaves_the_frame():
    """--hold_s: a face found at frames 0-3 and missed from frame 4 on (a small face's score
    flickering under the threshold) is reported, moved along its track, for hold_s seconds."""
    from amobilenet_jax.predict.tracking import Tracker

    moving = lambda n: (10 + 20 * n, 40, 60, 60)  # noqa: E731  (towards the right edge at 20 px a frame)
    detector = _ScriptedDetector(lambda n: [moving(n)] if n < 4 else [])
    for hold_s, reported in ((0.0, [1] * 4 + [0] * 6), (0.3, [1] * 7 + [0] * 3)):
        predictor = predict.Predictor(_CountingModel(), detector, 0.0, lambda r: None, detect_every=1)
        predictor.tracker = Tracker(hold_s=hold_s)
        records = predictor.run_batch(_numbered_frames(10))
        assert [len(r) for r in records] == reported
        held = [r[0] for r in records[4:] if r]
        assert all(r["detector_score"] is None and r["track"] == 0 for r in held)
        assert [r["box"][0] for r in held] == [moving(n)[0] for n in range(4, 4 + len(held))]
    # a held face whose centre leaves the frame is dropped, though its hold has not run out
    predictor = predict.Predictor(_CountingModel(), detector, 0.0, lambda r: None, detect_every=1)
    predictor.tracker = Tracker(hold_s=1.0)
    records = predictor.run_batch(_numbered_frames(14))
    assert [len(r) for r in records] == [1] * 13 + [0]  # at frame 13 its centre is at x = 300


class _BrightnessModel(_CountingModel):
    """Class "a" for a dark face, "b" for a bright one."""

    def probabilities(self, crops):
        bright = (crops.reshape(len(crops), -1).mean(1) > 127).astype(np.float32)
        return np.stack([1 - bright, bright], 1) * 0.9 + 0.05


def test_the_mood_player_follows_the_largest_tracked_face(tmp_path):
    """Two faces, a dark one (class a) and a bright one (class b); whichever is larger sets the
    mood, also in the frames where they are carried along their tracks."""
    from amobilenet_jax.predict.tracking import Tracker

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.mp3").write_bytes(b"")
    emitted = []
    mood = predict.MoodPlayer(str(tmp_path), ("a", "b"), window_s=0.25, emit=emitted.append)

    def frame(n):  # the dark face grows from 45 to 135 px, the bright one stays 80 px
        rgb = np.zeros((240, 400, 3), np.uint8)
        rgb[0, 0] = n
        dark, bright = 45 + 10 * n, 80
        rgb[100:180, 300:380] = 255
        return predict.Frame("clip.mp4", n, n / 10, rgb, "clip.mp4"), [(10, 10, dark, dark), (300, 100, bright, bright)]

    frames = [frame(n) for n in range(10)]
    boxes = {n: b for n, (_, b) in enumerate(frames)}
    detector = _ScriptedDetector(lambda n: sorted(boxes[n], key=lambda b: -b[2]))
    predictor = predict.Predictor(_BrightnessModel(), detector, 0.0, lambda r: None, mood=mood, detect_every=2)
    predictor.tracker = Tracker()
    records = predictor.run_batch([f for f, _ in frames])
    assert [len(r) for r in records] == [2] * 10 and detector.asked == [0, 2, 4, 6, 8]
    assert [r[0]["label"] for r in records] == ["b"] * 4 + ["a"] * 6  # the largest face first, carried or not
    assert [(e["mood"], e["time_s"]) for e in emitted] == [("b", 0.0), ("a", 0.5)]


def test_all_faces_of_a_batch_of_frames_go_through_the_model_in_one_call():
    model, records = _CountingModel(), []
    predictor = predict.Predictor(model, faces.FaceDetector(), 0.0, records.append)
    frames = [
        predict.Frame("group.png", None, None, media.group_photo(), "group.png"),
        predict.Frame("photo.jpg", None, None, media.astronaut(), "photo.jpg"),
        predict.Frame("blank.png", None, None, np.zeros((200, 200, 3), np.uint8), "blank.png"),
    ]
    per_frame = predictor.run_batch(frames)
    assert model.calls == [(4, 48, 48, 1)]
    assert [len(r) for r in per_frame] == [3, 1, 0]
    assert [r.get("face") for r in records] == [0, 1, 2, 0, None]
    assert records[0]["label"] == "b" and records[0]["score"] == 0.75


def test_the_crop_is_the_stored_image_format():
    image = media.astronaut()
    face = faces.crop(image, media.ASTRONAUT_FACE, (48, 48, 1))
    assert face.shape == (48, 48, 1) and face.dtype == np.uint8
    rgb = faces.crop(image, media.ASTRONAUT_FACE, (100, 100, 3))
    assert rgb.shape == (100, 100, 3)
    # margin 0 is the box itself: the crop is the box's gray pixels, resized
    x, y, w, h = media.ASTRONAUT_FACE
    want = faces.to_gray(image)[y : y + h, x : x + w].astype(float).mean()
    assert abs(face.astype(float).mean() - want) < 2.0
    assert faces.expand_box((10, 20, 40, 40), 0.25) == (0, 10, 60, 60)
    # a box past the frame's edge repeats the border instead of failing
    edge = faces.crop(np.full((50, 50, 3), 7, np.uint8), (30, 30, 40, 40), (48, 48, 1))
    assert edge.shape == (48, 48, 1) and (edge == 7).all()


def test_prediction_preprocesses_with_the_training_function(monkeypatch, tiny_config, tmp_path):
    """Model.logits resizes and normalises through augment.prepare_images, the function evaluation uses."""
    from amobilenet_jax import weights

    assert steps.prepare_images is augment.prepare_images  # the eval step's own

    config = tiny_config.copy_and_resolve_references()
    state = steps.state_without_data(config)
    weights.save(str(tmp_path / "weights.msgpack"), state.params, state.batch_stats)
    files.write_json_atomic(str(tmp_path / "config.json"), json.loads(config.to_json()))
    seen = []
    real = augment.prepare_images

    def recording(images, config, rng=None):
        seen.append(images.shape)
        return real(images, config, rng)

    monkeypatch.setattr(augment, "prepare_images", recording)
    model = inference.load_model(weights=str(tmp_path / "weights.msgpack"))
    faces_in = np.full((2, *model.native_shape), 128, np.uint8)
    logits = model.logits(faces_in)
    assert seen == [(16, *model.native_shape)]  # one padded batch of 16, traced once
    assert logits.shape == (2, len(model.class_names))
    probabilities = model.probabilities(faces_in)
    assert probabilities.sum(-1) == pytest.approx(np.ones(2), abs=1e-5)


def test_mood_player_smooths_and_cycles_tracks(tmp_path):
    for name, tracks in (("happy", ["1.mp3", "2.mp3"]), ("sad", ["x.ogg"])):
        (tmp_path / name).mkdir()
        for t in tracks:
            (tmp_path / name / t).write_bytes(b"")
    emitted = []
    player = predict.MoodPlayer(str(tmp_path), ("happy", "sad", "angry"), window_s=2.0, emit=emitted.append)
    happy, sad, angry = np.eye(3)
    assert player.update(0.0, [happy]) == "happy"
    assert player.update(0.5, [sad]) is None  # a moment of sadness does not outweigh the window
    assert player.update(1.0, []) is None  # no face: nothing changes
    for t in (1.5, 2.0, 2.5, 3.0):
        player.update(t, [sad])
    assert player.mood == "sad"
    for t in (3.5, 4.0, 4.5, 5.0, 5.5):
        player.update(t, [happy, happy])
    player.update(10.0, [angry])  # the window forgets everything older than 2 s
    assert [(r["mood"], os.path.basename(r["track"]) if r["track"] else None) for r in emitted] == [
        ("happy", "1.mp3"),
        ("sad", "x.ogg"),
        ("happy", "2.mp3"),
        ("angry", None),
    ]
    assert emitted[-1]["message"] == "no tracks in angry/"
    with pytest.raises(ValueError, match="no such playlist folder"):
        predict.MoodPlayer(str(tmp_path / "missing"), ("happy",))


@pytest.fixture(scope="module")
def tiny_model(tiny_config, tmp_path_factory):
    """A run directory holding a small random A-MobileNet as weights.msgpack + config.json."""
    from amobilenet_jax import weights

    run = tmp_path_factory.mktemp("tiny_run")
    config = tiny_config.copy_and_resolve_references()
    state = steps.state_without_data(config)
    weights.save(str(run / "weights.msgpack"), state.params, state.batch_stats)
    files.write_json_atomic(str(run / "config.json"), json.loads(config.to_json()))
    return run


def test_workdir_weights_and_the_model_variable_pick_the_model(python, photos, tiny_model):
    photo = str(photos / "photo.jpg")
    runs = {
        "--workdir": run_predict(python, "--workdir", str(tiny_model), photo),
        "--weights": run_predict(python, "--weights", str(tiny_model / "weights.msgpack"), photo),
    }
    env = {**os.environ, inference.MODEL_ENV: str(tiny_model)}
    done = subprocess.run(
        [python, "-m", "amobilenet_jax.predict", photo], cwd=REPO, capture_output=True, text=True, env=env, timeout=300
    )
    runs[inference.MODEL_ENV] = (done, [json.loads(line) for line in done.stdout.splitlines()])
    for how, (done, lines) in runs.items():
        assert done.returncode == 0, (how, done.stderr[-2000:])
        assert f"model {tiny_model / 'weights.msgpack'}" in done.stderr, how
        assert len(lines) == 1 and lines[0]["face"] == 0, how
    # the same model three ways: the same probabilities
    assert len({json.dumps(lines[0]["probabilities"]) for _, lines in runs.values()}) == 1


def test_play_opens_each_chosen_track_with_the_system_player(python, tmp_path, tiny_model):
    """--play hands the track to xdg-open (here a stand-in on PATH that records its argument)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.txt"
    player = bin_dir / "xdg-open"
    player.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    player.chmod(0o755)
    music = tmp_path / "music"
    for name in inference.load_model(workdir=str(tiny_model)).class_names:
        (music / name).mkdir(parents=True)
        (music / name / "song.mp3").write_bytes(b"")
    video = tmp_path / "clip.mp4"
    media.write_video(str(video), frames=12)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [python, "-m", "amobilenet_jax.predict", "--workdir", str(tiny_model), str(video),
         "--playlist_dir", str(music), "--play", "--mood_window_s", "0.2", "--no_progress"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    moods = [json.loads(line) for line in done.stdout.splitlines() if '"mood"' in line]
    assert moods and "frame/s]" not in done.stderr  # --no_progress: no bar
    for _ in range(50):  # the player is started, not waited for
        if opened.exists() and len(opened.read_text().splitlines()) == len(moods):
            break
        time.sleep(0.1)
    # each chosen track opened once; players started a moment apart may write in either order
    assert sorted(opened.read_text().splitlines()) == sorted(m["track"] for m in moods)


def test_predict_on_onnx_runtime_gives_the_jax_answer(python, photos, tiny_model, tmp_path):
    from amobilenet_jax import export

    onnx_file = tmp_path / "model.onnx"
    export.export(str(tiny_model), None, str(onnx_file))
    photo = str(photos / "folder" / "nested" / "group.png")
    on_onnx, onnx_lines = run_predict(python, "--onnx", str(onnx_file), photo, "--csv", str(tmp_path / "f.csv"))
    on_jax, jax_lines = run_predict(python, "--workdir", str(tiny_model), photo)
    assert on_onnx.returncode == 0 and on_jax.returncode == 0, on_onnx.stderr[-2000:]
    assert f"model {onnx_file}" in on_onnx.stderr
    assert [r["box"] for r in onnx_lines] == [r["box"] for r in jax_lines] and len(onnx_lines) == 3
    for o, j in zip(onnx_lines, jax_lines):
        assert o["label"] == j["label"]
        for name, p in j["probabilities"].items():
            assert o["probabilities"][name] == pytest.approx(p, abs=2e-4)
    done, _ = run_predict(python, "--onnx", str(onnx_file), "--workdir", str(tiny_model), photo)
    assert done.returncode == 2 and "not both" in done.stderr


class _CropRecordingModel(_CountingModel):
    def __init__(self):
        super().__init__()
        self.crops = []

    def probabilities(self, crops):
        self.crops.extend(crops)
        return super().probabilities(crops)


def test_faces_with_landmarks_are_levelled_before_the_crop_also_when_carried():
    """A face found with its eyes 20 degrees off level is turned upright before it is cut out, in
    the frames the detector looked at and in those where the face moved along its track (its
    landmarks move with it); with align off it is cut out as found."""
    from amobilenet_jax.predict.tracking import Tracker

    def eyes(box):  # 20 degrees below level from the image-left eye to the image-right one
        x, y, w, _ = box
        turn = np.radians(20)
        cx, cy, r = x + w / 2, y + w * 0.4, w * 0.2
        return ((cx - r * np.cos(turn), cy - r * np.sin(turn)), (cx + r * np.cos(turn), cy + r * np.sin(turn)))

    class Detector(_ScriptedDetector):
        def detect(self, rgb):
            return [faces.Face(f.box, f.detector_score, eyes(f.box)) for f in super().detect(rgb)]

    frames = []
    for n in range(6):
        rgb = np.random.default_rng(n).integers(0, 255, (200, 300, 3), dtype=np.uint8)
        rgb[0, 0] = n
        frames.append(predict.Frame("clip.mp4", n, n / 10, rgb, "clip.mp4"))
    crops = {}
    for align in (True, False):
        model, detector = _CropRecordingModel(), Detector(lambda n: [(40 + 10 * n, 50, 80, 80)])
        predictor = predict.Predictor(model, detector, 0.0, lambda r: None, detect_every=2, align=align, levels=False)
        predictor.tracker = Tracker()
        records = predictor.run_batch(frames)
        assert detector.asked == [0, 2, 4] and [r[0]["detector_score"] for r in records][:2] == [0.9, None]
        boxes = [tuple(r[0]["box"]) for r in records]
        assert boxes[3] == (70, 50, 80, 80)  # carried: moved on by the track's velocity
        for frame, box, crop in zip(frames, boxes, model.crops):
            expected = faces.crop(frame.rgb, box, (48, 48, 1), landmarks=eyes(box) if align else None)
            np.testing.assert_array_equal(crop, expected)
        crops[align] = np.stack(model.crops)
    assert np.abs(crops[True].astype(int) - crops[False]).mean() > 10
