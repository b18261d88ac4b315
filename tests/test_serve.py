"""amobilenet_jax.serve: the batcher, the routes' records against analyze(), the refusals, the
guards, and docs/serve.md's and README's commands run as written against a real server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import shlex
import socket
import struct
import subprocess
import time
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

import amobilenet_jax
from amobilenet_jax import faces, inference
from amobilenet_jax.errors import ConfigError
from amobilenet_jax.serve import Batcher, Service, create_app
from amobilenet_jax.serve.batcher import batch_sizes
from amobilenet_jax.serve.cli import check_exposure, parse_args
from tests import media
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(inference.SHIPPED_MODEL, "weights.msgpack")),
    reason="the shipped FERPlus model is not in this checkout",
)


# --- the batcher, with a stand-in model -----------------------------------------------------------


def row_sums(faces: np.ndarray) -> np.ndarray:
    return faces.reshape(len(faces), -1).sum(axis=1, keepdims=True).astype(np.float32)


def batched(requests: list[np.ndarray], classify, **options):
    """Each request's answer from one Batcher, all requests sent at once."""

    async def main():
        batcher = Batcher(classify, **options)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher(r) for r in requests), return_exceptions=True)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def requests_of(sizes):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (n, 4, 4, 1), np.uint8) for n in sizes]


def test_concurrent_requests_share_one_model_call():
    calls = []
    requests = requests_of([1, 2, 1, 3, 1, 1, 2, 1])
    answers = batched(requests, lambda f: calls.append(len(f)) or row_sums(f), max_batch=64, max_wait_ms=50)
    assert calls == [12]  # eight requests, one call
    for request, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer, row_sums(request))  # each its own rows, in order


def test_a_batch_holds_at_most_max_batch_faces_and_never_splits_a_request():
    calls = []
    requests = requests_of([1, 1, 2, 1, 5, 2])
    answers = batched(requests, lambda f: calls.append(len(f)) or row_sums(f), max_batch=3, max_wait_ms=50)
    assert calls == [2, 3, 5, 2]  # 1+1 (the 2 would pass 3), 2+1, the 5 alone, 2
    for request, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer, row_sums(request))
    calls.clear()
    batched(requests_of([1, 1, 1, 1]), lambda f: calls.append(len(f)) or row_sums(f), max_batch=1, max_wait_ms=50)
    assert calls == [1, 1, 1, 1]  # --max_batch 1: one request at a time


def test_batches_are_cut_back_to_the_sizes_the_model_runs_unpadded():
    assert batch_sizes(16) == (1, 2, 4, 8, 16) and batch_sizes(24) == (1, 2, 4, 8, 16, 24) and batch_sizes(1) == (1,)
    for sizes, expected in (([1] * 7, [4, 2, 1]), ([3, 3, 1], [3, 4]), ([5], [5])):
        calls = []
        requests = requests_of(sizes)
        answers = batched(
            requests,
            lambda f, calls=calls: calls.append(len(f)) or row_sums(f),
            max_batch=8,
            max_wait_ms=50,
            sizes=batch_sizes(8),
        )
        assert calls == expected, sizes
        for request, answer in zip(requests, answers):
            np.testing.assert_array_equal(answer, row_sums(request))


def test_a_failing_call_fails_its_requests_and_the_batcher_goes_on():
    def classify(f):
        if f.max() == 255:
            raise RuntimeError("boom")
        return row_sums(f)

    requests = [np.full((1, 2, 2, 1), 255, np.uint8), np.zeros((1, 2, 2, 1), np.uint8)]
    failed, fine = batched(requests, classify, max_batch=1, max_wait_ms=0)
    assert isinstance(failed, RuntimeError) and str(failed) == "boom"
    np.testing.assert_array_equal(fine, [[0.0]])


def test_batcher_flags_are_checked():
    with pytest.raises(ValueError, match="max_batch must be positive"):
        Batcher(row_sums, max_batch=0)


# --- the app, in-process, with the shipped model ----------------------------------------------------


class CountingModel:
    """The shipped model, counting its calls (the faces in each)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    @property
    def buckets(self):
        return self.model.buckets

    @buckets.setter
    def buckets(self, sizes):  # Service sets the batch sizes the model pads to
        self.model.buckets = sizes

    def probabilities(self, faces):
        self.calls.append(len(faces))
        return self.model.probabilities(faces)


@pytest.fixture(scope="module")
def model():
    return CountingModel(inference.load_model())


@pytest.fixture(scope="module")
def service(model):
    def detector():
        return faces.make_detector("retinaface", detect_width=640)  # as serve's and analyze's photos

    service = Service(model, detector, max_batch=8, max_wait_ms=5, max_pixels=1_000_000)
    assert model.model.buckets == (1, 2, 4, 8)
    model.warm_up(model.buckets)
    return service


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """name -> PNG bytes (lossless, so the upload decodes to the file's pixels), saved as files too."""
    root = tmp_path_factory.mktemp("serve")
    face = media.astronaut()
    images = {
        "astronaut.png": face,
        "mirrored.png": np.ascontiguousarray(face[:, ::-1]),
        "head.png": media.head_and_shoulders(),
        "pair.png": np.concatenate([face, face[:, ::-1]], axis=1),  # two faces
        "blank.png": np.full((240, 320, 3), 128, np.uint8),  # none
    }
    out = {}
    for name, rgb in images.items():
        Image.fromarray(rgb).save(root / name)
        out[name] = ((root / name).read_bytes(), str(root / name))
    return out


def without_file(records):
    return [{k: v for k, v in r.items() if k != "file"} for r in records]


def with_client(app, work):
    """``await work(client)`` against ``app`` in-process, its lifespan (pool, batcher) around it."""

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await work(client)

    return asyncio.run(main())


def post(client, data: bytes, name: str, **options):
    return client.post("/v1/predict", files={"image": (name, data, "image/png")}, **options)


def test_concurrent_requests_are_classified_in_fewer_calls_with_analyzes_records(model, service, photos):
    names = list(photos)
    expected = {n: amobilenet_jax.analyze(path) for n, (_, path) in photos.items()}
    assert [len(expected[n]) for n in names] == [1, 1, 1, 2, 1] and "message" in expected["blank.png"][0]
    service.batcher.max_wait_s = 0.5
    model.calls.clear()

    async def work(client):
        return await asyncio.gather(*(post(client, photos[n][0], n) for n in names))

    try:
        answers = with_client(create_app(service), work)
    finally:
        service.batcher.max_wait_s = 0.005
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    for name, answer in zip(names, answers):
        records = answer.json()
        assert {r["file"] for r in records} == {name}
        got, want = without_file(records), without_file(expected[name])
        for g, w in zip(got, want):  # another batch size than analyze's may differ in the last digit
            g_p, w_p = g.pop("probabilities", {}), w.pop("probabilities", {})
            assert g_p.keys() == w_p.keys() and all(abs(g_p[k] - w_p[k]) <= 2e-4 for k in g_p)
            assert abs(g.pop("score", 0) - w.pop("score", 0)) <= 2e-4
        assert got == want
    assert sum(model.calls) == 5 and len(model.calls) < 4  # five faces of four requests (the blank has none)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says ``width x height``: what a decompression bomb shows before decoding."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def big_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(body: bytes, boundary: str = "b0undary") -> dict:
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


def test_bad_requests_get_their_status_and_a_good_one_then_succeeds(service, photos, tmp_path):
    good, path = photos["astronaut.png"]
    jpeg = io.BytesIO()
    Image.fromarray(media.astronaut()).save(jpeg, "JPEG")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")

    async def chunked(size):
        for _ in range(size // 65536 + 1):
            yield b"\0" * 65536

    def raw(body, content_type: str = "image/png", **headers) -> dict:
        return {"content": body, "headers": {"content-type": content_type, **headers}}

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"  # PIL would hand it to Ghostscript
    field_only = b'--b0undary\r\nContent-Disposition: form-data; name="path"\r\n\r\n/etc/passwd\r\n--b0undary--\r\n'
    two_files = [("a", ("a.png", good, "image/png")), ("b", ("b.png", good, "image/png"))]
    bad = [  # (what, method, path, request options, status)
        ("a GET", "GET", "/v1/predict", {}, 405),
        ("an unknown route", "GET", "/v1/predict/../../etc/passwd", {}, 404),
        ("no content type", "POST", "/v1/predict", {"content": good}, 415),
        ("text", "POST", "/v1/predict", raw(b"hello", "text/plain"), 415),
        ("a path as JSON", "POST", "/v1/predict", {"json": {"path": str(secret)}}, 415),
        ("a path as the image", "POST", "/v1/predict", raw(str(secret).encode()), 400),
        ("a path in the query", "POST", f"/v1/predict?path={secret}", raw(b"x"), 400),
        ("an empty body", "POST", "/v1/predict", raw(b""), 400),
        ("a truncated JPEG", "POST", "/v1/predict", raw(jpeg.getvalue()[:4000], "image/jpeg"), 400),
        ("EPS, a format not read", "POST", "/v1/predict", raw(eps), 400),
        ("a body over the cap", "POST", "/v1/predict", raw(b"\0" * (2**20 + 1)), 413),
        ("a chunked body over the cap", "POST", "/v1/predict", raw(chunked(2**20 + 1)), 413),
        ("a Content-Length not a number", "POST", "/v1/predict", raw(b"x", **{"content-length": "abc"}), 400),
        ("more pixels than --max_pixels", "POST", "/v1/predict", raw(big_png(1100, 1000)), 413),
        ("a decompression bomb", "POST", "/v1/predict", raw(png_claiming(30000, 30000)), 413),
        ("a form without a file", "POST", "/v1/predict", multipart(field_only), 400),
        ("a form with two files", "POST", "/v1/predict", {"files": two_files}, 400),
        ("a malformed form", "POST", "/v1/predict", multipart(b"--b0undary\r\nno headers end"), 400),
        ("a file named as a path", "POST", "/v1/predict", {"files": {"image": (str(secret), b"x", "image/png")}}, 400),
        ("another Host", "GET", "/v1/model", {"headers": {"host": "evil.example"}}, 400),
    ]

    async def work(client):
        answers = [await client.request(method, url, **options) for _, method, url, options, _ in bad]
        return answers, await post(client, good, "astronaut.png")

    answers, ok = with_client(create_app(service, max_upload_mb=1.0), work)
    for (what, *_, status), answer in zip(bad, answers):
        assert answer.status_code == status, (what, answer.status_code, answer.text)
        message = answer.json()["error"]
        assert isinstance(message, str) and "\n" not in message and "not for clients" not in message, what
    assert len(bad) >= 10
    assert ok.status_code == 200
    assert without_file(ok.json()) == without_file(amobilenet_jax.analyze(path))


def test_no_route_takes_a_path(service):
    """The routes are docs/serve.md's: the page is three fixed files, a track is named by
    (expression, number), and nothing maps a request to a path."""
    app = create_app(service)
    assert sorted((r.path, tuple(sorted(r.methods))) for r in app.routes) == [
        ("/", ("GET", "HEAD")),
        ("/healthz", ("GET", "HEAD")),
        ("/page.css", ("GET", "HEAD")),
        ("/page.js", ("GET", "HEAD")),
        ("/v1/attention", ("POST",)),
        ("/v1/model", ("GET", "HEAD")),
        ("/v1/playlist", ("GET", "HEAD")),
        ("/v1/playlist/{expression}/{index:int}", ("GET", "HEAD")),
        ("/v1/predict", ("POST",)),
    ]
    assert [r.path for r in create_app(service, page=False).routes if not r.path.startswith(("/v1/", "/healthz"))] == []


def test_the_page_is_served_with_its_security_policy(service):
    async def work(client):
        return [await client.get(p) for p in ("/", "/page.js", "/page.css", "/index.html", "/../pyproject.toml")]

    index, script, style, *missing = with_client(create_app(service), work)
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert '<script src="/page.js" defer></script>' in index.text and "getUserMedia" in script.text
    assert script.headers["content-type"].startswith("text/javascript") and style.status_code == 200
    policy = index.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "://" not in index.text and "://" not in script.text  # no CDN, no other host
    assert all(a.status_code == 404 and set(a.json()) == {"error"} for a in missing)


def test_stream_frames_get_track_ids_smoothing_and_mood_records(model, service, photos, tmp_path):
    """Frames of one stream are tracked (ids) and smoothed as predict's video records; with a
    playlist, the stream's mood changes come as records naming the track's route, and the route
    serves the file's bytes; bad stream queries get one-line 400s."""
    from amobilenet_jax.predict.mood import read_playlist

    for expression in ("happiness", "neutral"):
        (tmp_path / expression).mkdir()
        (tmp_path / expression / f"{expression}.wav").write_bytes(b"RIFF" + expression.encode())
    streamed = Service(
        model,
        lambda: faces.make_detector("retinaface", detect_width=640),
        max_batch=8,
        playlist=read_playlist(str(tmp_path), model.class_names),
        max_streams=2,
    )
    good, mirrored = photos["astronaut.png"][0], photos["mirrored.png"][0]
    single = without_file(amobilenet_jax.analyze(photos["astronaut.png"][1]))

    async def work(client):
        def frame(data, stream, t, smooth=0.0):
            query = {"stream": stream, "time_s": t, "smooth_s": smooth}
            return client.post("/v1/predict", params=query, content=data, headers={"content-type": "image/png"})

        answers = [await frame(good, "cam-1", 0.0, 1.0), await frame(good, "cam-1", 0.2, 1.0)]
        answers.append(await frame(mirrored, "cam-1", 0.4, 1.0))
        answers.append(await frame(good, "other", 0.0))
        bad = [
            await client.post("/v1/predict?stream=a/b&time_s=0", content=good, headers={"content-type": "image/png"}),
            await client.post("/v1/predict?stream=a", content=good, headers={"content-type": "image/png"}),
            await client.post("/v1/predict?time_s=1", content=good, headers={"content-type": "image/png"}),
            await client.post("/v1/predict?stream=a&time_s=nan", content=good, headers={"content-type": "image/png"}),
            await frame(good, "a", 0.0, 60.0),
            await client.get("/v1/playlist/sadness/0"),
            await client.get("/v1/playlist/nobody/0"),
            await client.get("/v1/playlist/happiness/1"),
        ]
        listing = await client.get("/v1/playlist")
        track = await client.get("/v1/playlist/happiness/0")
        return answers, bad, listing, track

    answers, bad, listing, track = with_client(create_app(streamed), work)
    first, second, third, other = (a.json() for a in answers)
    assert [r.get("track") for r in first] == [0, "/v1/playlist/happiness/0"]  # the face, then the mood
    assert first[1] == {"mood": "happiness", "time_s": 0.0, "track": "/v1/playlist/happiness/0"}
    assert [r["time_s"] for r in first[:1] + second + third] == [0.0, 0.2, 0.4] and len(second) == 1
    face = {k: v for k, v in without_file(first[:1])[0].items() if k not in ("track", "time_s")}
    assert face == {k: v for k, v in single[0].items() if k not in ("track", "time_s")}  # predict's record
    mirrored_alone = amobilenet_jax.analyze(photos["mirrored.png"][1])[0]["probabilities"]
    for name, p in third[0]["probabilities"].items():  # smoothed over 1 s: the mean of the track's 3 frames
        assert abs(p - (2 * first[0]["probabilities"][name] + mirrored_alone[name]) / 3) <= 3e-4
    assert third[0]["track"] == 0 and other[0]["track"] == 0 and other[1]["mood"] == "happiness"
    assert [a.status_code for a in bad] == [400, 400, 400, 400, 400, 404, 404, 404]
    assert all(set(a.json()) == {"error"} and "\n" not in a.json()["error"] for a in bad)
    assert listing.json() == {
        "window_s": 3.0,
        "tracks": {n: [f"{n}.wav"] if n in ("happiness", "neutral") else [] for n in model.class_names},
    }
    assert (
        track.status_code == 200
        and track.content == b"RIFFhappiness"
        and track.headers["content-type"] in ("audio/wav", "audio/x-wav")
    )
    assert len(streamed.streams) == 2


def test_a_streams_face_the_detector_misses_is_held_for_hold_s(service, photos):
    """As predict's video: a face a stream found a moment ago and the detector misses now (here a
    grey frame) is kept along its track, its detector_score null, for hold_s seconds (default
    0.5), then dropped; with hold_s=0 it is dropped at once; a hold over 1 s is a 400, and a ValueError from Python."""
    face = media.astronaut()
    buffer = io.BytesIO()
    Image.fromarray(np.full_like(face, 128)).save(buffer, format="PNG")
    good, grey = photos["astronaut.png"][0], buffer.getvalue()

    async def work(client):
        def frame(data, stream, t, **hold):
            query = {"stream": stream, "time_s": t, **hold}
            return client.post("/v1/predict", params=query, content=data, headers={"content-type": "image/png"})

        held = [await frame(good, "held", 0.0), await frame(grey, "held", 0.3), await frame(grey, "held", 0.7)]
        dropped = [await frame(good, "none", 0.0, hold_s=0), await frame(grey, "none", 0.3, hold_s=0)]
        return [a.json() for a in held + dropped], await frame(good, "bad", 0.0, hold_s=2)

    (found, kept, gone, found_too, missed), bad = with_client(create_app(service), work)
    assert found[0]["detector_score"] is not None and found[0]["track"] == 0
    assert [(r["track"], r["detector_score"]) for r in kept] == [(0, None)]  # held, not found
    assert all(abs(a - b) <= 2 for a, b in zip(kept[0]["box"], found[0]["box"]))  # where it was: it did not move
    assert abs(sum(kept[0]["probabilities"].values()) - 1) <= 2e-3
    assert [r["face"] for r in gone] == [None] and found_too[0]["track"] == 0  # 0.7 s unseen: past the hold
    assert [r["face"] for r in missed] == [None]  # hold_s=0
    assert bad.status_code == 400 and "hold_s" in bad.json()["error"]
    for bounds in ({"hold_s": 2.0}, {"hold_s": float("nan")}, {"smooth_s": -1.0}):  # from Python, the same bounds
        with pytest.raises(ValueError, match=f"{next(iter(bounds))} .*must be in"):
            asyncio.run(service.predict(good, stream="python", time_s=0.0, **bounds))


def test_streams_are_bounded_and_expire():
    from amobilenet_jax.serve.streams import Streams

    now = [0.0]
    made = []
    streams = Streams(lambda: made.append(object()) or made[-1], max_streams=2, idle_s=60, clock=lambda: now[0])
    a = streams.get("a")
    assert streams.get("a") is a and len(made) == 1
    streams.get("b")
    now[0] = 10.0
    streams.get("a")  # a used last: b goes when c comes
    streams.get("c")
    assert len(streams) == 2 and streams.get("a") is a and len(made) == 3
    now[0] = 100.0
    streams.get("d")  # a and c idle for over 60 s: forgotten
    assert len(streams) == 1 and streams.get("a") is not a
    with pytest.raises(ValueError, match="stream id"):
        streams.get("../x")


def test_attention_route_gives_a_faces_maps_and_refuses_clearly(service, photos, monkeypatch):
    async def work(client):
        good = photos["pair.png"][0]
        return [
            await client.post("/v1/attention?face=1", content=good, headers={"content-type": "image/png"}),
            await client.post("/v1/attention?face=2", content=good, headers={"content-type": "image/png"}),
            await client.post("/v1/attention?face=-1", content=good, headers={"content-type": "image/png"}),
            await client.post("/v1/attention?face=0&path=x", content=good, headers={"content-type": "image/png"}),
        ]

    before = service.stats()
    ok, *bad = with_client(create_app(service), work)
    after = service.stats()
    # /healthz counts them apart: they never reach the batcher, whose requests and calls give the batching.
    assert after["attention_requests"] > before["attention_requests"]
    assert [after[k] for k in ("requests", "model_calls")] == [before[k] for k in ("requests", "model_calls")]
    answer = ok.json()
    assert ok.status_code == 200, answer
    records = amobilenet_jax.analyze(photos["pair.png"][1])
    assert answer["face"] == 1 and answer["box"] == records[1]["box"] and answer["label"] == records[1]["label"]
    assert abs(answer["score"] - records[1]["score"]) <= 2e-4
    assert list(answer["maps"]) == ["block4", "block6", "block11", "block13"]
    for url in (answer["crop"], *answer["maps"].values()):
        image = Image.open(io.BytesIO(base64.b64decode(url.removeprefix("data:image/png;base64,"))))
        assert image.size == (144, 144)  # the 48x48 crop, three times
    assert [a.status_code for a in bad] == [400, 400, 400]
    assert bad[0].json() == {"error": "face 2: the image has 2 faces, numbered from 0"}
    monkeypatch.setattr(service, "no_attention", "model.onnx: an ONNX model gives no attention maps")

    async def onnx(client):
        return await client.post("/v1/attention", content=photos["pair.png"][0], headers={"content-type": "image/png"})

    refused = with_client(create_app(service), onnx)
    assert refused.status_code == 404 and refused.json() == {
        "error": "model.onnx: an ONNX model gives no attention maps"
    }


def test_token_guards_the_v1_routes(service, photos):
    async def work(client):
        auth = {"authorization": "Bearer s3cret"}
        return [
            await client.get("/v1/model"),
            await client.get("/v1/model", headers={"authorization": "Bearer wrong"}),
            await client.get("/v1/model", headers=auth),
            await post(client, photos["astronaut.png"][0], "a.png"),
            await post(client, photos["astronaut.png"][0], "a.png", headers=auth),
            await client.get("/healthz"),
            await client.get("/"),  # the page holds no data: it asks for the token
            await client.get("/v1/playlist"),
        ]

    answers = with_client(create_app(service, token="s3cret", allowed_hosts=None), work)
    assert [a.status_code for a in answers] == [401, 401, 200, 401, 200, 200, 200, 401]
    assert answers[0].headers["www-authenticate"] == "Bearer"


def test_model_route_names_the_classes_the_accuracy_and_its_source(service):
    async def work(client):
        return (await client.get("/v1/model")).json()

    info = with_client(create_app(service), work)
    shipped = inference.load_model()
    assert info["class_names"] == list(shipped.class_names)
    # The shipped model's files are named inside the package: a client learns nothing of where it is installed.
    package = os.path.dirname(os.path.abspath(inference.__file__))
    assert info["source"] == os.path.join("amobilenet_jax", os.path.relpath(shipped.source, package))
    assert info["source"].startswith("amobilenet_jax/assets/ferplus_amobilenet/")
    assert info["views"] == 12
    assert info["valid"]["from"] == "amobilenet_jax/assets/ferplus_amobilenet/eval_valid.json"
    assert round(info["valid"]["accuracy"], 4) == 0.8565  # README's figure for the shipped model


# --- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, refused",
    [
        ([], False),
        (["--host", "::1"], False),
        (["--host", "localhost", "--token", "t"], False),
        (["--host", "0.0.0.0"], True),
        (["--host", "192.168.1.5"], True),
        (["--host", "myhost.example"], True),
        (["--host", "0.0.0.0", "--token", "t"], False),
        (["--host", "0.0.0.0", "--no_auth"], False),
        (["--token", "t", "--no_auth"], True),
    ],
)
def test_listening_beyond_loopback_takes_a_token_or_no_auth(argv, refused, monkeypatch):
    monkeypatch.delenv("AMOBILENET_JAX_TOKEN", raising=False)
    args = parse_args(argv)
    if refused:
        with pytest.raises(ConfigError):
            check_exposure(args)
    else:
        check_exposure(args)


def test_predicts_face_flags_reach_every_predictor_of_the_service(monkeypatch):
    """serve takes predict's --margin, --no_align and --no_levels; each request's and each
    stream's predictor is built with them."""
    from amobilenet_jax.serve import cli

    built = []

    class Stop(Exception):
        pass

    def service(model, make_detector, **options):
        real = Service(model, make_detector, **options)
        built.append(real._predictor(None))
        raise Stop

    monkeypatch.setattr("amobilenet_jax.serve.service.Service", service)
    for argv in (["--margin", "0.1", "--no_align", "--no_levels"], []):
        with pytest.raises(Stop):
            cli.run(parse_args(argv))
    flagged, default = built
    assert (flagged.margin, flagged.align, flagged.levels) == (0.1, False, False)
    assert (default.margin, default.align, default.levels) == (0.0, True, True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bash_lines(path: str) -> list[str]:
    with open(os.path.join(REPO, path)) as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def wait_for_health(server: subprocess.Popen, port: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server ended with {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the server did not answer /healthz")


def test_docs_and_readme_commands_run_as_written(python, photos, tmp_path):
    """docs/serve.md's commands in order, each server on a free port (its curl lines aimed there):
    the uploads' records equal analyze()'s on the same photo, a server beyond loopback without a
    token refuses to start with one line, and README's command is among them."""
    (readme_command,) = [line for line in bash_lines("README.md") if "amobilenet_jax.serve" in line]
    lines = bash_lines("docs/serve.md")
    assert readme_command in lines and sum("curl" in line for line in lines) >= 7
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(media.astronaut()).save(jpeg)
    expected = without_file(amobilenet_jax.analyze(str(jpeg)))
    (tmp_path / "music" / "happiness").mkdir(parents=True)  # --playlist_dir music/
    (tmp_path / "music" / "happiness" / "song.wav").write_bytes(b"RIFF")
    env = {**os.environ, "PYTHONPATH": REPO, "PATH": f"{os.path.dirname(python)}:{os.environ['PATH']}"}
    env.pop("AMOBILENET_JAX_TOKEN", None)
    server, port, ran = None, None, []
    try:
        for line in lines:
            argv = shlex.split(line)
            if argv[:3] == ["python", "-m", "amobilenet_jax.serve"]:
                if server is not None:
                    server.terminate()
                    server.wait(timeout=60)
                port = free_port()
                server = subprocess.Popen(
                    [python, *argv[1:], "--port", str(port)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
                )
                host = argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1"
                if host != "127.0.0.1" and "--token" not in argv and "--no_auth" not in argv:
                    assert server.wait(timeout=120) == 2
                    (message,) = server.stderr.read().splitlines()
                    assert message.startswith("serve: error: --host 0.0.0.0 listens beyond this machine")
                    server = None
                else:
                    wait_for_health(server, port)
                ran.append(line)
                continue
            assert argv[0] == "curl", line
            argv = [a.replace(":8000/", f":{port}/") for a in argv]
            done = subprocess.run([*argv, "-s", "-S"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (line, done.stderr)
            answer = json.loads(done.stdout)
            route = argv[-1].split(f":{port}", 1)[1]
            if route == "/v1/predict":
                assert without_file(answer) == expected, line
                assert {r["file"] for r in answer} == ({"photo.jpg"} if "-F" in argv else {"<upload>"})
            elif route == "/v1/model":
                assert answer["class_names"] == list(inference.load_model().class_names)
            elif route == "/v1/attention?face=0":
                assert (answer["face"], answer["box"], answer["label"]) == (0, expected[0]["box"], expected[0]["label"])
                assert list(answer["maps"]) == ["block4", "block6", "block11", "block13"]
            elif route == "/v1/playlist":
                assert answer["tracks"]["happiness"] == ["song.wav"] and answer["window_s"] == 3.0
            else:
                assert answer["status"] == "ok" and answer["requests"] >= 2
            ran.append(line)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    assert ran == lines
