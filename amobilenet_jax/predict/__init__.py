"""Expressions of every face in photos, folders, videos or a camera: one JSON line per face.

    python -m amobilenet_jax.predict photo.jpg                  # the shipped FERPlus model
    python -m amobilenet_jax.predict --workdir runs/x photos/ clip.mp4 --out annotated/ --csv faces.csv
    python -m amobilenet_jax.predict --onnx model.onnx photo.jpg   # the same pipeline on ONNX Runtime
    python -m amobilenet_jax.predict --camera 0 --playlist_dir music/ --play

Faces are found offline (``faces``), cropped as the training data was, and all faces of a batch
of frames classified in one compiled call (``pipeline``); in video each face keeps a track id
(``tracking``) and the detector runs on every ``--detect_every``-th frame once a face is
tracked. ``sinks`` writes the records (docs/outputs.md has their fields), ``mood`` is the
paper's mood player. A file that cannot be read is one error line, and the rest goes on.
"""

from amobilenet_jax.predict.cli import main, parse_args
from amobilenet_jax.predict.media import Frame, expand_inputs, is_video, read_image
from amobilenet_jax.predict.mood import MoodPlayer
from amobilenet_jax.predict.pipeline import Predictor, run

__all__ = ["Frame", "MoodPlayer", "Predictor", "expand_inputs", "is_video", "main", "parse_args", "read_image", "run"]
