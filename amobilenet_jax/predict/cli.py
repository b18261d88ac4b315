"""``python -m amobilenet_jax.predict``: the command line."""

from __future__ import annotations

import argparse

from amobilenet_jax.faces import DEFAULT_DETECTOR, DETECTORS
from amobilenet_jax.predict.pipeline import (
    DETECT_EVERY,
    HOLD_S,
    MAX_HOLD_S,
    PHOTO_DETECT_WIDTH,
    VIDEO_DETECT_WIDTH,
    run,
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose the model (predict's and serve's)."""
    which = parser.add_argument_group("model (default: the shipped FERPlus model)")
    which.add_argument("--workdir", help="a run directory (its weights.msgpack, which a finished run writes)")
    which.add_argument("--weights", help="a weights file with its config.json beside it")
    which.add_argument("--onnx", help="an ONNX file written by amobilenet_jax.export, run on ONNX Runtime")
    parser.add_argument(
        "--no_crops",
        action="store_true",
        help="classify each face on itself and its mirror only, not on the model's test-time crops too "
        "(eval_crops): about 4x less model time per face, for video on a slow CPU",
    )


def add_face_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that find faces and cut them out (predict's and serve's)."""
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        default=DEFAULT_DETECTOR,
        help="retinaface (default): RetinaFace-MobileNet0.25; haar: OpenCV's cascade; ssd: OpenCV's res10 SSD; "
        "measured in experiments/faces/",
    )
    parser.add_argument("--min_face", type=int, default=40, help="smallest face side kept, in pixels")
    parser.add_argument(
        "--detect_width",
        type=int,
        default=0,
        help=f"shrink frames to this width to find faces "
        f"(default {PHOTO_DETECT_WIDTH} for photos; for video "
        + ", ".join(f"{k} {v or 'its own'}" for k, v in VIDEO_DETECT_WIDTH.items())
        + ")",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="grow the face box by this much of its side (0 matches FER+ crops best)",
    )
    parser.add_argument(
        "--no_align",
        action="store_true",
        help="cut faces out as found; by default a face found with landmarks (retinaface) is first turned so that "
        "its eyes are level",
    )
    parser.add_argument(
        "--small_faces",
        action="store_true",
        help="also find faces down to about 50 px in a 640-px frame: RetinaFace looks again at the frame enlarged "
        "twice, and each face only that pass finds is checked by a second look (detection about 5x slower)",
    )
    parser.add_argument(
        "--no_levels",
        action="store_true",
        help="classify face crops as cut out; by default a dim or flat crop has its brightness and contrast "
        "raised to the range of the training faces, and a blurred one is sharpened",
    )


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        prog="python -m amobilenet_jax.predict",
        description="Facial expressions of every face in images, folders, videos or a camera (one JSON line per face).",
    )
    parser.add_argument("inputs", nargs="*", help="image files, folders (searched recursively) and video files")
    add_model_arguments(parser)
    add_face_arguments(parser)
    parser.add_argument("--camera", type=int, default=None, metavar="N", help="read camera N until Ctrl-C")
    parser.add_argument("--csv", help="also write the records to this CSV file")
    parser.add_argument("--out", help="write annotated images and videos into this folder")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="look at every Nth video frame")
    parser.add_argument("--batch_frames", type=int, default=16, help="frames classified together in one call")
    parser.add_argument(
        "--detect_every",
        type=int,
        default=DETECT_EVERY,
        metavar="N",
        help="video: once a face is found, run the detector on every Nth frame looked at; between, "
        f"faces move along their tracks (default {DETECT_EVERY}; 1: every frame)",
    )
    parser.add_argument(
        "--smooth_s",
        type=float,
        default=0.0,
        help="video: average each tracked face's probabilities over this many seconds (0: each frame its own)",
    )
    parser.add_argument(
        "--hold_s",
        type=float,
        default=HOLD_S,
        help="video: keep a tracked face the detector misses for up to this many seconds, moved along its track "
        f"(default {HOLD_S:g}; 0: a face missed is dropped at once)",
    )
    parser.add_argument(
        "--timeline",
        metavar="FILE",
        help="video: draw each tracked face's expression probabilities over time into FILE (.png, .svg or .pdf), "
        "one panel a track, smoothed as --smooth_s says",
    )
    parser.add_argument("--playlist_dir", help="mood player: DIR/<expression>/ holds the tracks for each expression")
    parser.add_argument(
        "--mood_window_s", type=float, default=3.0, help="mood player: seconds the expression is averaged over"
    )
    parser.add_argument(
        "--play", action="store_true", help="mood player: open each chosen track with the system's player"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--quiet_json", action="store_true", help=argparse.SUPPRESS)  # benchmarks: no stdout records
    args = parser.parse_args(argv)
    if not args.inputs and args.camera is None:
        parser.error("name at least one image, folder or video, or --camera N")
    # flag: (lowest, highest or None); each bad value gets its own line naming it
    limits = {"every": (1, None), "detect_every": (1, None), "batch_frames": (1, None), "min_face": (1, None)}
    limits |= {"detect_width": (0, None), "margin": (0, None), "smooth_s": (0, None), "hold_s": (0, MAX_HOLD_S)}
    for name, (low, high) in limits.items():
        value = getattr(args, name)
        if value < low or (high is not None and value > high):
            rule = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
            parser.error(f"--{name} {value:g}: must be {rule}")
    if args.mood_window_s <= 0:
        parser.error(f"--mood_window_s {args.mood_window_s:g}: must be > 0")
    if args.timeline and not args.timeline.lower().endswith((".png", ".svg", ".pdf")):
        parser.error(f"--timeline {args.timeline}: name a .png, .svg or .pdf file")
    if args.play and not args.playlist_dir:
        parser.error("--play needs --playlist_dir")
    return args


def main(argv: list[str] | None = None) -> None:
    from amobilenet_jax.inference import command_main

    command_main("predict", parse_args, run, argv)
