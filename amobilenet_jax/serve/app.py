"""The HTTP routes over a ``Service``: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz``;
every refusal is a status and a one-line JSON ``{"error": ...}``. A bearer token, when given,
guards all but ``/healthz``; a server on loopback answers only requests addressed to loopback
(a web page cannot reach it by a DNS name that resolves to 127.0.0.1)."""

from __future__ import annotations

import contextlib
import hmac

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from amobilenet_jax.serve import uploads
from amobilenet_jax.serve.service import Service, describe

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
OPEN_PATHS = ("/healthz",)  # answered without the token: a probe learns only that the server is up


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
        if refusal is None and self.token is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                refusal = error(401, "send the header 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"})
        if refusal is not None:
            return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(
    service: Service,
    *,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES,
    max_upload_mb: float = 20.0,
    page_dir: str | None = None,
) -> Starlette:
    """The app. ``allowed_hosts`` None answers any Host header (a server bound beyond loopback);
    ``page_dir``, when given, is served as static files under ``/`` (the routes come first)."""
    max_bytes = int(max_upload_mb * 2**20)
    info = describe(service.model)

    async def predict(request: Request):
        try:
            data, name = await uploads.image_bytes(request, max_bytes)
            return JSONResponse(await service.predict(data, name))
        except uploads.UploadError as e:
            return error(e.status, str(e))
        except ClientDisconnect:
            return error(400, "the client went away before the upload ended")

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
        Route("/v1/model", model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if page_dir is not None:
        from starlette.staticfiles import StaticFiles

        routes.append(Mount("/", StaticFiles(directory=page_dir, html=True)))
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error, Exception: server_error}
    )
    app.add_middleware(_Guard, token=token, allowed_hosts=allowed_hosts)
    return app
