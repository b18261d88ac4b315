"""faces.py: the detectors on a real photo, the crop geometry, eye levelling, suppression."""

import cv2
import numpy as np
import pytest
from skimage import data

from amobilenet_jax import faces
from tests import media

ASTRONAUT = cv2.resize(data.astronaut(), (640, 480))  # one face, about 110 px, near (285, 110)
FACE_CENTRE = (285, 110)


@pytest.mark.parametrize(
    "name",
    [
        "haar",
        "ssd",
        "retinaface",  # the default: its ONNX file ships inside the package
    ],
)
def test_each_detector_finds_the_one_face_of_a_photo_and_none_in_a_face_free_one(name):
    detector = faces.make_detector(name)
    (face,) = detector.detect(ASTRONAUT)
    x, y, w, h = face.box
    assert abs(x + w / 2 - FACE_CENTRE[0]) < 25 and abs(y + h / 2 - FACE_CENTRE[1]) < 25 and 90 < w < 140
    assert detector.detect(cv2.resize(data.coffee(), (640, 480))) == []
    if name == "retinaface":  # eyes, nose, mouth corners inside the box, eyes above the mouth
        assert len(face.landmarks) == 5
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
        assert face.landmarks[0][1] < face.landmarks[3][1] and face.landmarks[0][0] < face.landmarks[1][0]


def test_levelling_the_eyes_undoes_a_tilt():
    detector = faces.make_detector("retinaface", detect_width=0)
    upright = faces.eye_angle(detector.detect(ASTRONAUT)[0].landmarks)
    for tilt in (-15, 15):
        turn = cv2.getRotationMatrix2D(FACE_CENTRE, tilt, 1.0)
        tilted = cv2.warpAffine(ASTRONAUT, turn, (640, 480), borderMode=cv2.BORDER_REPLICATE)
        face = detector.detect(tilted)[0]
        assert abs(faces.eye_angle(face.landmarks) - (upright - tilt)) < 6
        levelled = faces.crop(tilted, face.box, (240, 240, 3), geometry={"scale": 1.6}, landmarks=face.landmarks)
        framed = cv2.copyMakeBorder(levelled, 100, 100, 100, 100, cv2.BORDER_REPLICATE)
        assert abs(faces.eye_angle(detector.detect(framed)[0].landmarks)) < 6


def test_light_levels_lift_a_dim_flat_crop_and_leave_a_well_lit_one():
    rng = np.random.default_rng(0)
    texture = rng.normal(0.0, 1.0, (48, 48, 1))
    lit = np.clip(128 + 50 * texture, 0, 255).astype(np.uint8)  # as most training faces are
    assert faces.level_light(lit) is lit
    dim = np.clip(50 + 12 * texture, 0, 255).astype(np.uint8)
    out = faces.level_light(dim).astype(np.float64)
    assert out.mean() == pytest.approx(faces.LIGHT_MEAN_RANGE[0], abs=0.5)
    assert out.std() == pytest.approx(faces.LIGHT_MIN_STD, abs=0.5)
    assert np.corrcoef(out.ravel(), dim.ravel())[0, 1] > 0.99  # the same picture, brighter and stronger
    bright = np.clip(220 + 45 * texture, 0, 255).astype(np.uint8)
    out = faces.level_light(bright).astype(np.float64)
    assert out.mean() == pytest.approx(faces.LIGHT_MEAN_RANGE[1], abs=0.5)  # darker
    assert bright.std() > faces.LIGHT_MIN_STD and out.std() == pytest.approx(bright.std(), abs=0.5)  # contrast kept
    flat = np.full((48, 48, 1), 30, np.uint8)  # no contrast to stretch: only its level moves
    assert np.unique(faces.level_light(flat)).tolist() == [86]


def test_detail_levels_sharpen_a_blurred_crop_and_leave_a_sharp_one():
    def detail(image):
        grey = image[..., 0].astype(np.float32)
        return cv2.Laplacian(grey, cv2.CV_32F, borderType=cv2.BORDER_REPLICATE).var() / grey.var()

    sharp = media.sample_faces((48, 48, 1), count=1)[0]
    assert detail(sharp) >= faces.DETAIL_MIN_RATIO and faces.sharpen_detail(sharp) is sharp
    blurred = cv2.GaussianBlur(sharp, (0, 0), 1.5)[..., None]
    assert detail(blurred) < faces.DETAIL_MIN_RATIO
    out = faces.sharpen_detail(blurred)
    assert detail(out) > 1.5 * detail(blurred) and abs(float(out.mean()) - float(blurred.mean())) < 2.0
    flat = np.full((48, 48, 1), 120, np.uint8)
    assert faces.sharpen_detail(flat) is flat
    dim = (blurred * 0.4).astype(np.uint8)  # level: the light first, then the detail
    np.testing.assert_array_equal(faces.level(dim), faces.sharpen_detail(faces.level_light(dim)))


def test_small_faces_finds_a_face_too_small_for_the_first_pass_and_no_false_one():
    frame = media.small_face_frame()
    assert faces.RetinaFaceDetector(min_face=12).detect(frame) == []
    detector = faces.RetinaFaceDetector(min_face=12, small_faces=True)
    (face,) = detector.detect(frame)
    x, y, width = media.SMALL_FACE_AT
    bx, by, bw, bh = face.box
    assert x <= bx and bx + bw <= x + width and y <= by and by + bh <= y + width and 12 <= bw <= 24
    assert len(face.landmarks) == 5 and face.detector_score > 0.8
    assert detector.detect(cv2.resize(data.coffee(), (640, 480))) == []
    with pytest.raises(ValueError, match="--small_faces needs --detector retinaface"):
        faces.make_detector("haar", small_faces=True)


def test_the_coarse_graph_gives_the_whole_graphs_coarser_levels_exactly():
    import onnxruntime as ort

    with open(faces.RETINAFACE_FILE, "rb") as f:
        weights = f.read()
    whole = ort.InferenceSession(weights, providers=["CPUExecutionProvider"])
    coarse = ort.InferenceSession(faces.coarse_graph(weights), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-120, 140, (1, 3, 96, 160)).astype(np.float32)
    finest = 2 * (96 // 8) * (160 // 8)  # two anchors a cell at stride 8
    for a, b in zip(whole.run(None, {"input": x}), coarse.run(None, {"input": x}), strict=True):
        assert b.shape[1] == a.shape[1] - finest
        np.testing.assert_array_equal(a[:, finest:], b)
    detector = faces.RetinaFaceDetector()
    assert len(detector.anchors(96, 160, coarse=True)) == len(detector.anchors(96, 160)) - finest
    with pytest.raises(ValueError, match="not the RetinaFace graph"):
        faces.coarse_graph(faces.coarse_graph(weights))


def test_small_faces_on_the_coarse_graph_finds_what_the_whole_graph_finds():
    class WholeGraph(faces.RetinaFaceDetector):
        def _run(self, rgb, scale, threshold, min_face, coarse=False):
            return super()._run(rgb, scale, threshold, min_face, coarse=False)

    detector, whole = faces.RetinaFaceDetector(small_faces=True), WholeGraph(small_faces=True)
    for frame in (media.group_photo(), cv2.resize(media.group_photo(), (450, 210))):
        found = detector.detect(frame)
        assert len(found) >= 2 and [f.box for f in found] == [f.box for f in whole.detect(frame)]
    assert detector._coarse_session is not None  # the enlarged pass took the coarse graph


def test_crop_geometry_scales_and_moves_the_box():
    assert faces.crop_box((10, 20, 100, 80), None) == (10, 20, 100, 80)
    x, y, w, h = faces.crop_box((10, 20, 100, 80), {"scale": 1.2, "dx": 0.1, "dy": -0.05})
    assert (w, h) == pytest.approx((120, 120))
    assert (x + w / 2, y + h / 2) == pytest.approx((60 + 10, 60 - 5))
    frame = np.zeros((200, 200), np.uint8)
    frame[50:150, 50:150] = 255
    whole = faces.crop(frame, (50, 50, 100, 100), (48, 48, 1))
    assert whole.min() == 255  # the box is the square
    grown = faces.crop(frame, (50, 50, 100, 100), (48, 48, 1), geometry={"scale": 2.0})
    assert grown[0, 0, 0] == 0 and grown[24, 24, 0] == 255


def test_suppression_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10]], np.float32)
    assert faces._nms(boxes, np.array([0.5, 0.9, 0.7]), 0.4) == [1, 2]


def test_the_default_detector_ships_in_the_package_and_a_damaged_copy_is_named(tmp_path, monkeypatch):
    assert faces.DEFAULT_DETECTOR == "retinaface"
    assert faces.RETINAFACE_FILE.endswith("assets/retinaface/retinaface_mobilenet025.onnx")
    damaged = tmp_path / "retinaface_mobilenet025.onnx"
    damaged.write_bytes(open(faces.RETINAFACE_FILE, "rb").read()[:-10])
    monkeypatch.setattr(faces, "RETINAFACE_FILE", str(damaged))
    with pytest.raises(ValueError, match=rf"^{damaged}: not the RetinaFace model this version ships"):
        faces.RetinaFaceDetector()
    monkeypatch.setattr(faces, "RETINAFACE_FILE", str(tmp_path / "gone.onnx"))
    with pytest.raises(FileNotFoundError, match=r"gone.onnx: the RetinaFace model is missing .*; reinstall"):
        faces.make_detector("retinaface")


def test_an_unknown_detector_or_a_missing_package_is_named():
    with pytest.raises(ValueError, match="--detector must be one of"):
        faces.make_detector("mtcnn")
    with pytest.raises(ImportError, match="pip install"):
        faces._package_dir("no_such_package_here", "pip install it")


def test_the_default_detector_loads_no_display_library():
    """A server has no libGL or X11: finding a face must not map them (opencv-python would)."""
    import subprocess
    import sys

    code = (
        "import numpy as np, cv2; from skimage import data; from amobilenet_jax import faces\n"
        "found = faces.make_detector(faces.DEFAULT_DETECTOR).detect(cv2.resize(data.astronaut(), (640, 480)))\n"
        "print(len(found)); print(open('/proc/self/maps').read())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    count, maps = done.stdout.split("\n", 1)
    assert count == "1"
    loaded = {line.rsplit("/", 1)[-1] for line in maps.splitlines() if ".so" in line}
    assert not [lib for lib in loaded if lib.startswith(("libGL", "libX11", "libgthread", "libQt"))], sorted(loaded)
