"""The paper's attention claim on real faces: CBAM's spatial maps of the shipped model.

    python experiments/attention/attention_demo.py [--out experiments/attention]

Inputs are photos that ship inside scikit-image (nothing downloaded): the astronaut photo,
and a sheet of twelve Labeled Faces in the Wild crops from ``skimage.data.lfw_subset()``,
enlarged 4.8x and framed so the face detector can find them. Runs the real command,
``python -m amobilenet_jax.visualize ... --out DIR``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np


def lfw_sheet() -> np.ndarray:
    import cv2
    from skimage import data

    lfw = (data.lfw_subset()[:12] * 255).round().astype(np.uint8)  # the first 100 are faces
    tiles = []
    for face in lfw:
        big = cv2.resize(face, (120, 120), interpolation=cv2.INTER_CUBIC)
        tiles.append(cv2.copyMakeBorder(big, 30, 30, 30, 30, cv2.BORDER_REPLICATE))
    return np.vstack([np.hstack(tiles[:6]), np.hstack(tiles[6:])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="experiments/attention")
    args = parser.parse_args()
    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(data.astronaut()).save(os.path.join(tmp, "astronaut.png"))
        Image.fromarray(lfw_sheet()).save(os.path.join(tmp, "lfw_sheet.png"))
        photos = [os.path.join(tmp, name) for name in ("astronaut.png", "lfw_sheet.png")]
        command = [sys.executable, "-m", "amobilenet_jax.visualize", *photos, "--out", args.out, "--min_face", "60"]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
