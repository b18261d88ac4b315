"""Expressions of every face in photos, folders, videos or a camera: one JSON line per face.

    python -m amobilenet_jax.predict photo.jpg                  # the shipped FERPlus model
    python -m amobilenet_jax.predict --workdir runs/x photos/ clip.mp4 --out annotated/ --csv faces.csv
    python -m amobilenet_jax.predict --weights model/weights.msgpack --every 5 clip.mp4
    python -m amobilenet_jax.predict --onnx model.onnx photo.jpg   # the same pipeline on ONNX Runtime
    python -m amobilenet_jax.predict --camera 0 --playlist_dir music/ --play

Each face prints one JSON line on stdout::

    {"file": "photo.jpg", "frame": null, "time_s": null, "face": 0, "track": null, "box": [x, y, w, h],
     "score": 0.93, "label": "happiness", "probabilities": {"neutral": 0.01, ...}, "detector_score": 0.998}

``box`` is in the input's own pixels; ``score`` is the probability of ``label``; ``frame``
and ``time_s`` number video and camera frames (null for a photo). An input or frame with no
face prints one line with ``"face": null`` and ``"message": "no face found"``; a file that
cannot be read prints one line with ``"error"`` and the rest goes on. ``--csv`` writes the
same records as a table, ``--out`` annotated copies (box, label, confidence) of the images
and videos. Folders are searched recursively. Progress and a closing summary go to stderr.

Faces are found by RetinaFace-MobileNet0.25, whose ONNX file ships in the package
(``--detector`` picks another), and cropped as the training data was (``faces``); all faces of
a batch of frames are classified in one compiled call. In video each face keeps a ``"track"`` id
across frames (``tracking``), and once a face is tracked the detector looks at every
``--detect_every``-th frame (default 3): the faces between move along their tracks, with
``"detector_score": null``.

Mood player (the paper's demo): ``--playlist_dir DIR`` holds one folder of tracks per
expression, named as the model's classes (``DIR/happiness/``, ``DIR/sadness/``, ...). The
expression averaged over the last ``--mood_window_s`` seconds of a video or the camera picks
the folder; each time that mood changes, the next track of its folder is printed as a JSON
line ``{"mood": ..., "time_s": ..., "track": ...}``, and ``--play`` opens it with the
system's player.
"""

from amobilenet_jax.predict.cli import main, parse_args
from amobilenet_jax.predict.media import Frame, expand_inputs, is_video, read_image
from amobilenet_jax.predict.mood import MoodPlayer
from amobilenet_jax.predict.pipeline import Predictor, run

__all__ = ["Frame", "MoodPlayer", "Predictor", "expand_inputs", "is_video", "main", "parse_args", "read_image", "run"]
