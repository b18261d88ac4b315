"""serve's page in a real browser: headless Chromium, its camera a generated video, talking to
``python -m amobilenet_jax.serve`` started as a user starts it. The labels and probabilities the
page shows are checked against ``analyze`` on the same frames; then a face's attention maps, the
mood player, and a photo upload. Chromium and chromedriver are Debian's (``.ci/run`` installs
them); without them the test skips, except in CI, where it fails."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import time
import wave

import numpy as np
import pytest
from PIL import Image

import amobilenet_jax
from amobilenet_jax import inference
from tests import media
from tests.conftest import REPO

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
# Where to write the page's screenshot for docs/serve_page.png (the test always takes one).
SCREENSHOT_ENV = "AMOBILENET_JAX_PAGE_SCREENSHOT"
# The page's labels against analyze() on the video's frames: the browser's camera path changes the
# pixels (the video is stored as YUV 4:2:0, the page sends a JPEG), which moved a probability by
# up to 0.002 when measured; the same JPEG bytes give analyze's records to the last digit.
CAMERA_TOLERANCE = 0.02
SAME_BYTES_TOLERANCE = 2e-4  # another batch size than analyze's may differ in the last digit
WAIT_S = 240  # the server's first start compiles the model; a loaded 2-core machine is slow

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(inference.SHIPPED_MODEL, "weights.msgpack")),
    reason="the shipped FERPlus model is not in this checkout",
)


def skip_or_fail(reason: str):
    """A missing browser skips here, fails in CI (where .ci/run installs it)."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this does not skip)")
    pytest.skip(reason)


def camera_frame() -> np.ndarray:
    """The fake camera's picture, 640x480: the astronaut and her mirror image side by side."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    head = media.head_and_shoulders()  # 280x260
    canvas[100:380, 40:300] = head
    canvas[100:380, 340:600] = head[:, ::-1]
    return canvas


def write_y4m(path, rgb: np.ndarray, frames: int = 4, fps: int = 10) -> None:
    """A YUV4MPEG2 (4:2:0) video of ``frames`` copies of ``rgb``: what Chromium's fake camera plays."""
    import cv2

    height, width = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + i420)


def write_wav(path, seconds: float = 1.0, rate: int = 8000) -> None:
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(tone.tobytes())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    frame = camera_frame()
    Image.fromarray(frame).save(root / "frame.png")
    write_y4m(root / "camera.y4m", frame)
    Image.fromarray(media.group_photo()).save(root / "group.png")
    for expression in ("happiness", "neutral"):
        (root / "music" / expression).mkdir(parents=True)
        write_wav(root / "music" / expression / f"{expression}.wav")
    return root


class Server:
    """``python -m amobilenet_jax.serve --port 0 --playlist_dir music/`` started as a user starts
    it; ``url()`` waits for the port it prints (the browser starts meanwhile)."""

    def __init__(self, python: str, cwd):
        self.log = cwd / "serve.log"
        env = {**os.environ, "PYTHONPATH": REPO}
        env.pop("AMOBILENET_JAX_TOKEN", None)
        argv = [python, "-m", "amobilenet_jax.serve", "--port", "0", "--playlist_dir", "music/"]
        with open(self.log, "w") as stderr:
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stderr=stderr)
        self.started = time.monotonic()

    def url(self) -> str:
        while True:
            found = re.search(r"serve: http://127\.0\.0\.1:(\d+)/ ", self.log.read_text())
            if found:
                return f"http://127.0.0.1:{found.group(1)}"
            if self.process.poll() is not None or time.monotonic() > self.started + WAIT_S:
                raise AssertionError(f"the server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def server(files, python):
    server = Server(python, files)
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=60)


@pytest.fixture(scope="module")
def browser(files):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        skip_or_fail("no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1280,1150",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",  # the camera permission, granted
        f"--use-file-for-fake-video-capture={files / 'camera.y4m'}",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver, script: str, what: str, timeout_s: float = WAIT_S):
    """The value of ``script`` (JavaScript returning a value) once it is truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"the page never showed {what}; its status: {status}")


# The face cards as the page shows them, with the JPEG those answers came from (read in the same
# turn of the page's event loop as the cards, so they belong together).
READ_CARDS = """
const done = arguments[arguments.length - 1];
const cards = [...document.querySelectorAll('#faces .face')].map((card) => ({
  face: Number(card.dataset.face), track: card.dataset.track, label: card.dataset.label,
  score: Number(card.dataset.score), text: card.querySelector('h3').textContent,
  probabilities: Object.fromEntries(
    [...card.querySelectorAll('.bar')].map((b) => [b.dataset.class, Number(b.dataset.p)])),
}));
const reader = new FileReader();
reader.onload = () => done({cards, jpeg: reader.result.split(',')[1]});
reader.readAsDataURL(window.expressionPage.last.blob);
"""


def check_cards(cards: list[dict], records: list[dict], tolerance: float) -> float:
    """The page's cards against ``analyze``'s records: the same faces in order, labels equal,
    probabilities within ``tolerance``; returns the largest difference."""
    assert [c["face"] for c in cards] == [r["face"] for r in records]
    assert [c["label"] for c in cards] == [r["label"] for r in records]
    worst = 0.0
    for card, record in zip(cards, records):
        assert card["probabilities"].keys() == record["probabilities"].keys()
        for name, p in record["probabilities"].items():
            worst = max(worst, abs(card["probabilities"][name] - p))
        assert abs(card["score"] - record["score"]) <= tolerance
        assert card["text"].endswith(f"{record['label']} {card['score']:.2f}")
    assert worst <= tolerance, worst
    return worst


def test_the_page_shows_predicts_labels_for_the_camera_and_an_upload(server, browser, files):
    driver = browser
    url = server.url()
    on_frame = amobilenet_jax.analyze(str(files / "frame.png"))  # before the page's frames share the CPU
    on_photo = amobilenet_jax.analyze(str(files / "group.png"))
    driver.get(url + "/")
    wait_until(driver, "return document.getElementById('status').textContent.startsWith('Ready')", "Ready")
    assert not driver.find_element("id", "mood-section").get_attribute("hidden")  # started with a playlist
    driver.find_element("id", "camera").click()

    # live: two faces found, tracked over several answers
    wait_until(
        driver,
        "const p = window.expressionPage; return p.source === 'camera' && p.frames >= 4 && "
        "document.querySelectorAll('#faces .face').length === 2",
        "two faces from the camera",
    )
    shown = driver.execute_async_script(READ_CARDS)
    jpeg = files / "sent.jpg"
    jpeg.write_bytes(base64.b64decode(shown["jpeg"]))
    on_sent = amobilenet_jax.analyze(str(jpeg))
    assert [r["label"] for r in on_frame] == ["happiness", "happiness"]
    camera_error = check_cards(shown["cards"], on_frame, CAMERA_TOLERANCE)
    check_cards(shown["cards"], on_sent, SAME_BYTES_TOLERANCE)
    assert sorted(c["track"] for c in shown["cards"]) == ["0", "1"]  # the server's tracker: one id a face
    print(f"page: the camera's probabilities differ from analyze on the frame by up to {camera_error:.4f}")

    # each track's timeline, one panel a track
    panels = wait_until(
        driver,
        "const f = [...document.querySelectorAll('#timelines figure')]; "
        "return f.length === 2 && f.every((x) => Number(x.dataset.points) >= 2) && f.map((x) => x.dataset.track)",
        "a timeline a track",
    )
    assert sorted(panels) == ["0", "1"]

    # the mood player: happiness is the mood, its folder's track loaded into the page's player
    mood = wait_until(
        driver,
        "const m = document.getElementById('mood'); const a = document.getElementById('player'); "
        "return m.dataset.track && a.duration > 0 && [m.dataset.mood, m.dataset.track, a.duration]",
        "the mood player's track",
    )
    assert mood[:2] == ["happiness", "/v1/playlist/happiness/0"] and abs(mood[2] - 1.0) < 0.05

    # a chosen face's attention maps: the model's input and one map a CBAM block
    driver.execute_script("document.querySelector('#faces .face').click()")  # cards are redrawn each answer
    images = wait_until(
        driver,
        "const a = document.getElementById('attention'); const i = [...a.querySelectorAll('img')]; "
        "return a.dataset.label && i.length && i.every((x) => x.complete && x.naturalWidth > 0) && "
        "[a.dataset.label, i.map((x) => x.alt)]",
        "the attention maps",
    )
    assert images[0] == "happiness"
    assert images[1] == ["the model's input", "CBAM block4", "CBAM block6", "CBAM block11", "CBAM block13"]
    time.sleep(0.5)  # a few more answers drawn under the chosen face before the picture
    screenshot = driver.get_screenshot_as_png()
    assert Image.open(io.BytesIO(screenshot)).size[0] >= 1000
    if os.environ.get(SCREENSHOT_ENV):  # docs/serve_page.png: 256 colours (octree keeps the small ones) keep it small
        picture = Image.open(io.BytesIO(screenshot)).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        picture.save(os.environ[SCREENSHOT_ENV], optimize=True)

    # a photo upload: one request, the photo's records (a PNG: the page sends the file's own bytes)
    driver.find_element("id", "upload").send_keys(str(files / "group.png"))
    wait_until(driver, "return document.getElementById('status').textContent.startsWith('group.png: ')", "the photo")
    shown = driver.execute_async_script(READ_CARDS)
    expected = on_photo
    assert len(expected) == 3 and base64.b64decode(shown["jpeg"]) == (files / "group.png").read_bytes()
    check_cards(shown["cards"], expected, SAME_BYTES_TOLERANCE)
    assert all(c["text"].startswith(f"face {c['face']}: ") for c in shown["cards"])  # a photo has no tracks
    assert driver.execute_script("return document.querySelectorAll('#timelines figure').length") == 0
