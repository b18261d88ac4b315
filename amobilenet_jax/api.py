"""Expressions from Python: ``analyze`` returns the records ``predict`` prints, one dict a face.

    import amobilenet_jax
    records = amobilenet_jax.analyze("photo.jpg")        # a path, a folder, an array, a PIL image
    table = amobilenet_jax.to_dataframe(records)          # pandas, one row a face

The options are ``predict``'s flags with the same defaults, and the work is ``predict``'s own
pipeline, so a record here is the line ``predict`` prints. The model and detector of each set of
options load once and stay loaded for the next call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from amobilenet_jax.predict import cli, pipeline
from amobilenet_jax.predict.media import Frame, expand_inputs, is_video, read_image
from amobilenet_jax.predict.sinks import CSV_COLUMNS_HEAD, csv_row

_PREDICTORS: dict[tuple, pipeline.Predictor] = {}
# predict's flags that choose what is loaded (the model, the detector); the rest act per call
_LOADED = ("workdir", "weights", "onnx", "no_crops", "detector", "min_face", "small_faces")


def _options(options: dict):
    """predict's arguments: its command line's defaults, with ``options`` in place of flags."""
    args = cli.parse_args(["-"])
    unknown = sorted(set(options) - set(vars(args)) - {"inputs"})
    if unknown:
        raise TypeError(f"analyze() got unknown options {unknown}; it takes predict's flags: {sorted(vars(args))}")
    vars(args).update(options)
    args.inputs, args.out, args.csv, args.camera, args.no_progress = [], None, None, None, True
    if min(args.every, args.batch_frames, args.min_face, args.detect_every) < 1 or args.margin < 0:
        raise ValueError("every, detect_every, batch_frames and min_face must be positive, margin >= 0")
    if not 0 <= args.hold_s <= pipeline.MAX_HOLD_S:
        raise ValueError(f"hold_s must be in [0, {pipeline.MAX_HOLD_S:g}] seconds")
    return args


def _predictor(args, records: list) -> pipeline.Predictor:
    key = tuple(getattr(args, name) for name in _LOADED)
    predictor = _PREDICTORS.get(key)
    if predictor is None:
        from amobilenet_jax import faces as faces_lib

        model = pipeline.load(args)
        detector = faces_lib.make_detector(args.detector, min_face=args.min_face, small_faces=args.small_faces)
        predictor = _PREDICTORS[key] = pipeline.Predictor(model, detector, args.margin, None)
    predictor.emit_record, predictor.csv, predictor.mood = records.append, None, None
    predictor.margin, predictor.align, predictor.detect_every = args.margin, not args.no_align, args.detect_every
    predictor.levels = not args.no_levels
    predictor.tracker = None
    return predictor


def _frames(source, name: str) -> Iterable[tuple[str, object]]:
    """``("video", path)`` or ``("image", Frame or error record)`` for one source."""
    if isinstance(source, (str, os.PathLike)):
        for path, key in expand_inputs([os.fspath(source)]):
            if is_video(path):
                yield "video", (path, key)
                continue
            try:
                yield "image", Frame(path, None, None, read_image(path), key)
            except ValueError as e:
                yield "image", {"file": path, "error": str(e)}
        return
    if hasattr(source, "convert") and hasattr(source, "size"):  # a PIL image
        source = np.asarray(source.convert("RGB"))
    rgb = np.asarray(source)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4) or rgb.dtype != np.uint8:
        raise ValueError(f"{name}: an image array is uint8 (H, W, 3) RGB or (H, W) gray, got {rgb.dtype} {rgb.shape}")
    yield "image", Frame(name, None, None, np.ascontiguousarray(rgb[..., :3]), name)


def analyze(source, **options) -> list[dict]:
    """The records of every face in ``source``: an image or video path, a folder (searched as
    ``predict`` searches it), a uint8 RGB array, a PIL image, or a list of these. Photos give one
    record a face (or a ``no face found`` record); a video gives one a face and frame, with the
    face's ``track`` id across frames. ``options`` are predict's flags by name, e.g.
    ``analyze("clip.mp4", smooth_s=0.5, detector="haar")``, ``analyze(img, workdir="runs/x")``."""
    from amobilenet_jax import runtime

    runtime.configure()
    runtime.enable_compilation_cache()
    args = _options(options)
    records: list[dict] = []
    predictor = _predictor(args, records)
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    predictor.detector.detect_width = args.detect_width or pipeline.PHOTO_DETECT_WIDTH
    batch: list[Frame] = []

    def flush():
        if batch:
            predictor.run_batch(batch)
            batch.clear()

    for i, item in enumerate(sources):
        name = f"<image {i}>" if len(sources) > 1 else "<image>"
        for kind, value in _frames(item, name):
            if kind == "video":
                flush()
                pipeline.run_video(predictor, value[0], value[1], args, camera=False)
                predictor.detector.detect_width = args.detect_width or pipeline.PHOTO_DETECT_WIDTH
                predictor.tracker = None
            elif isinstance(value, dict):
                flush()
                records.append(value)
            else:
                batch.append(value)
                if len(batch) >= args.batch_frames:
                    flush()
    flush()
    return records


def to_dataframe(records: list[dict]):
    """The records as a pandas DataFrame with the columns of ``predict --csv`` (box as x, y, w, h;
    one ``p_<class>`` column a class). Needs pandas (``pip install pandas``)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_dataframe needs pandas: pip install pandas") from None
    rows = [csv_row(record) for record in records]
    names = [name for record in records for name in record.get("probabilities", {})]
    columns = CSV_COLUMNS_HEAD + [f"p_{name}" for name in dict.fromkeys(names)] + ["message", "error"]
    return pd.DataFrame(rows, columns=columns)
