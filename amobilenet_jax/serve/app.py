"""The HTTP routes over a ``Service``: ``POST /v1/predict``, ``POST /v1/attention``, ``GET /v1/model``,
``GET /v1/playlist[/<expression>/<index>]``, ``GET /healthz``, and the page (``/`` and its two
files, from ``page/``); every refusal is a status and a one-line JSON ``{"error": ...}``. A bearer
token, when given, guards the ``/v1/`` routes (the page holds no data: it asks for the token);
a server on loopback answers only requests addressed to loopback (a web page cannot reach it by
a DNS name that resolves to 127.0.0.1)."""

from __future__ import annotations

import contextlib
import hmac
import math
import mimetypes
import os

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from amobilenet_jax.predict.pipeline import HOLD_S, MAX_HOLD_S
from amobilenet_jax.serve import uploads
from amobilenet_jax.serve.service import MAX_SMOOTH_S, Service, describe

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
GUARDED = "/v1/"  # the token guards these; /healthz tells only that the server is up, the page holds no data
PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
PAGE_FILES = {
    "/": ("index.html", "text/html"),
    "/page.js": ("page.js", "text/javascript"),
    "/page.css": ("page.css", "text/css"),
}
# Every answer: the page runs its own script and style only, talks to this server only, shows
# images it made (data: and blob: URLs), and is framed by no one.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
        b"media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status, headers=headers)


class _Guard:
    """ASGI middleware: the Host header (when ``allowed_hosts``) and the bearer token (when ``token``)."""

    def __init__(self, app, token: str | None, allowed_hosts: tuple[str, ...] | None):
        self.app, self.token, self.allowed_hosts = app, token, allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = None
        if self.allowed_hosts is not None:
            host = headers.get("host", "").lower()
            host = host[: host.find("]") + 1] if host.startswith("[") else host.split(":")[0]
            if host not in self.allowed_hosts:
                refusal = error(400, f"this server answers requests addressed to {', '.join(self.allowed_hosts)} only")
        if refusal is None and self.token is not None and scope["path"].startswith(GUARDED):
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                refusal = error(401, "send the header 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"})

        async def secured(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if refusal is not None:
            return await refusal(scope, receive, secured)
        return await self.app(scope, receive, secured)


def stream_options(query) -> dict:
    """``/v1/predict``'s query: ``stream`` (an id), with ``time_s`` (the frame's time, seconds) and
    optionally ``smooth_s`` and ``hold_s``; none of them for a single image."""
    from amobilenet_jax.serve.streams import STREAM_ID

    unknown = set(query) - {"stream", "time_s", "smooth_s", "hold_s"}
    if unknown:
        raise uploads.UploadError(
            400, f"unknown query parameter(s) {', '.join(sorted(unknown))}: stream, time_s, smooth_s, hold_s"
        )
    if "stream" not in query:
        if query:
            raise uploads.UploadError(400, "time_s, smooth_s and hold_s go with stream")
        return {}
    if not STREAM_ID.fullmatch(query["stream"]):
        raise uploads.UploadError(400, "stream: 1 to 64 letters, digits, '-' or '_'")
    values = {}
    limits = (("time_s", 0.0, 1e7, None), ("smooth_s", 0.0, MAX_SMOOTH_S, 0.0), ("hold_s", 0.0, MAX_HOLD_S, HOLD_S))
    for key, low, high, default in limits:
        try:
            value = float(query[key]) if key in query else default
        except ValueError:
            value = math.nan
        if value is None or not (math.isfinite(value) and low <= value <= high):
            raise uploads.UploadError(400, f"{key}: a number of seconds from {low:g} to {high:g} (stream needs time_s)")
        values[key] = value
    return {"stream": query["stream"], **values}


def page_file(body: bytes, media_type: str):
    async def endpoint(request: Request):
        return Response(body, media_type=media_type, headers={"cache-control": "no-cache"})

    return endpoint


def create_app(
    service: Service,
    *,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES,
    max_upload_mb: float = 20.0,
    page: bool = True,
) -> Starlette:
    """The app. ``allowed_hosts`` None answers any Host header (a server bound beyond loopback);
    ``page`` serves the page at ``/``. The playlist routes are there when the service has one."""
    max_bytes = int(max_upload_mb * 2**20)
    info = describe(service.model)

    async def answer(request: Request, work):
        try:
            return JSONResponse(await work())
        except uploads.UploadError as e:
            return error(e.status, str(e))
        except ClientDisconnect:
            return error(400, "the client went away before the upload ended")

    async def predict(request: Request):
        async def work():
            options = stream_options(request.query_params)
            data, name = await uploads.image_bytes(request, max_bytes)
            return await service.predict(data, name, **options)

        return await answer(request, work)

    async def attention(request: Request):
        async def work():
            face = request.query_params.get("face", "0")
            if set(request.query_params) - {"face"} or not face.isdigit() or len(face) > 4:
                raise uploads.UploadError(400, "the query takes face, the face's number in the records (from 0)")
            if service.no_attention is not None:
                raise uploads.UploadError(404, service.no_attention)
            data, _ = await uploads.image_bytes(request, max_bytes)
            return await service.attention(data, int(face))

        return await answer(request, work)

    def playlist_tracks(request: Request) -> list[str]:
        if service.playlist is None:
            raise HTTPException(404, "this server has no playlist (start it with --playlist_dir DIR)")
        expression = request.path_params.get("expression")
        if expression is not None and expression not in service.playlist:
            raise HTTPException(404, f"no expression {expression[:40]!r}: one of {', '.join(service.playlist)}")
        return service.playlist.get(expression, [])

    async def playlist(request: Request):
        playlist_tracks(request)
        tracks = {name: [os.path.basename(p) for p in paths] for name, paths in service.playlist.items()}
        return JSONResponse({"window_s": service.mood_window_s, "tracks": tracks})

    async def track(request: Request):
        tracks, index = playlist_tracks(request), request.path_params["index"]
        if index >= len(tracks):
            have = f"{len(tracks)} track{'s' if len(tracks) > 1 else ''}, numbered from 0" if tracks else "no tracks"
            raise HTTPException(404, f"{request.path_params['expression']} has {have}")
        media_type = mimetypes.guess_type(tracks[index])[0] or "application/octet-stream"
        return FileResponse(tracks[index], media_type=media_type)

    async def model(request: Request):
        return JSONResponse(info)

    async def healthz(request: Request):
        return JSONResponse({"status": "ok", **service.stats()})

    async def http_error(request: Request, e: HTTPException):
        return error(e.status_code, f"{request.method} {request.url.path}: {e.detail}", e.headers)

    async def server_error(request: Request, e: Exception):
        return error(500, f"internal error ({type(e).__name__}: {str(e)[:200]})")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            await service.stop()

    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/v1/attention", attention, methods=["POST"]),
        Route("/v1/model", model, methods=["GET"]),
        Route("/v1/playlist", playlist, methods=["GET"]),
        Route("/v1/playlist/{expression}/{index:int}", track, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if page:  # a fixed set of files, read once: no route maps a request to a path
        for path, (name, media_type) in PAGE_FILES.items():
            with open(os.path.join(PAGE_DIR, name), "rb") as f:
                body = f.read()
            routes.append(Route(path, page_file(body, media_type), methods=["GET"]))
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error, Exception: server_error}
    )
    app.add_middleware(_Guard, token=token, allowed_hosts=allowed_hosts)
    return app
