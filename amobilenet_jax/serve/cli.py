"""``python -m amobilenet_jax.serve``: the flags, the refusal to listen beyond loopback unguarded,
the model loaded and compiled before the port opens, and uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from amobilenet_jax.errors import ConfigError
from amobilenet_jax.predict.cli import add_face_arguments, add_model_arguments

TOKEN_ENV = "AMOBILENET_JAX_TOKEN"  # --token's default: a token kept out of the process list


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        prog="python -m amobilenet_jax.serve",
        description="Serve predict's records over HTTP (POST an image to /v1/predict) and a page with the camera "
        "at / (docs/serve.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed at start)")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"require 'Authorization: Bearer TOKEN' on /v1/ routes (default: ${TOKEN_ENV}); "
        "needed to listen beyond loopback, unless --no_auth",
    )
    parser.add_argument("--no_auth", action="store_true", help="listen beyond loopback without a token")
    parser.add_argument(
        "--max_batch", type=int, default=16, help="most faces classified in one model call (compiled at start)"
    )
    parser.add_argument(
        "--max_wait_ms", type=float, default=5.0, help="how long a batch's first request waits for others"
    )
    parser.add_argument("--max_upload_mb", type=float, default=20.0, help="larger uploads are refused (413)")
    parser.add_argument(
        "--max_pixels", type=int, default=40_000_000, help="larger images are refused (413) before decoding"
    )
    parser.add_argument("--detect_threads", type=int, default=2, help="threads that decode uploads and find faces")
    parser.add_argument("--max_connections", type=int, default=64, help="connections at once; more are answered 503")
    parser.add_argument(
        "--max_streams",
        type=int,
        default=8,
        help="cameras and videos tracked at once (the least recently used is dropped; an idle one after 60 s)",
    )
    parser.add_argument(
        "--playlist_dir", help="mood player: DIR/<expression>/ holds the tracks the page plays for each expression"
    )
    parser.add_argument(
        "--mood_window_s", type=float, default=3.0, help="mood player: seconds the expression is averaged over"
    )
    add_model_arguments(parser)
    add_face_arguments(parser)
    args = parser.parse_args(argv)
    positive = (args.max_batch, args.max_pixels, args.detect_threads, args.max_connections, args.min_face)
    if min(*positive, args.max_streams) < 1:
        parser.error(
            "--max_batch, --max_pixels, --detect_threads, --max_connections, --max_streams and --min_face "
            "must be positive"
        )
    if args.max_wait_ms < 0 or args.max_upload_mb <= 0 or args.margin < 0 or args.detect_width < 0:
        parser.error("--max_wait_ms, --margin and --detect_width must be >= 0, --max_upload_mb > 0")
    if args.mood_window_s <= 0:
        parser.error("--mood_window_s must be > 0")
    return args


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve to anything


def check_exposure(args) -> None:
    """Beyond loopback, a server answers anyone who can reach it: that takes a token or --no_auth."""
    if args.token is not None and args.no_auth:
        raise ConfigError("give --token or --no_auth, not both")
    if args.token is not None and not args.token.strip():
        raise ConfigError("--token is empty")
    if not is_loopback(args.host) and args.token is None and not args.no_auth:
        raise ConfigError(
            f"--host {args.host} listens beyond this machine: give --token T (clients send 'Authorization: Bearer T') "
            "or --no_auth to serve anyone who can reach it"
        )


def run(args) -> int:
    import uvicorn

    from amobilenet_jax import faces
    from amobilenet_jax.predict import pipeline
    from amobilenet_jax.predict.mood import read_playlist
    from amobilenet_jax.serve.app import create_app
    from amobilenet_jax.serve.service import Service

    check_exposure(args)
    if args.small_faces and args.detector != "retinaface":
        raise ConfigError(f"--small_faces needs --detector retinaface (got {args.detector!r})")
    model = pipeline.load(args)
    playlist = read_playlist(args.playlist_dir, model.class_names) if args.playlist_dir else None
    detect_width = args.detect_width or pipeline.PHOTO_DETECT_WIDTH  # as analyze() and predict read photos
    service = Service(
        model,
        lambda: faces.make_detector(
            args.detector, min_face=args.min_face, detect_width=detect_width, small_faces=args.small_faces
        ),
        margin=args.margin,
        align=not args.no_align,
        levels=not args.no_levels,
        detect_threads=args.detect_threads,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_pixels=args.max_pixels,
        max_streams=args.max_streams,
        playlist=playlist,
        mood_window_s=args.mood_window_s,
    )
    if hasattr(model, "warm_up"):  # the batch sizes the service runs (model.buckets), compiled before the port opens
        sizes = ", ".join(map(str, model.buckets))
        also = " and a face's attention maps" if service.no_attention is None else ""
        print(
            f"serve: compiling for batches of {sizes} faces{also} (cached for the next start)",
            file=sys.stderr,
            flush=True,
        )
        model.warm_up(model.buckets)
        if service.no_attention is None:  # the page's /v1/attention: one face, its maps too
            import numpy as np

            model.logits(np.zeros((1, *model.native_shape), np.uint8), return_attention=True)
    app = create_app(
        service,
        token=args.token,
        allowed_hosts=app_hosts(args.host),
        max_upload_mb=args.max_upload_mb,
    )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, limit_concurrency=args.max_connections, log_level="warning"
    )
    sock = config.bind_socket()  # bound here, so the line below names the port that --port 0 chose
    host = f"[{args.host}]" if ":" in args.host else args.host
    guard = "token required" if args.token else ("loopback only" if is_loopback(args.host) else "no token")
    tracks = f"; mood player: {sum(map(len, playlist.values()))} tracks" if playlist else ""
    print(
        f"serve: http://{host}:{sock.getsockname()[1]}/ (the page; {guard}); model {model.source}; "
        f"batches of up to {args.max_batch} faces, waiting up to {args.max_wait_ms:g} ms{tracks}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def app_hosts(host: str):
    """The Host headers a server on ``host`` answers: loopback names on loopback, any beyond."""
    from amobilenet_jax.serve.app import LOOPBACK_NAMES

    return LOOPBACK_NAMES if is_loopback(host) else None


def main(argv: list[str] | None = None) -> None:
    from amobilenet_jax.inference import command_main

    command_main("serve", parse_args, run, argv)
