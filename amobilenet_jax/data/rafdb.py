"""RAF-DB basic emotions (7 classes), in the layout its authors release::

    basic/EmoLabel/list_patition_label.txt     "train_00001.jpg 5" per line (sic: "patition")
    basic/Image/aligned/train_00001_aligned.jpg   100x100 RGB face

Labels in the list are 1..7 = surprise, fear, disgust, happiness, sadness, anger,
neutral; they are returned as 0..6 in that order. The split is the name's prefix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from amobilenet_jax.data import Dataset, Split
from amobilenet_jax.data.ferplus import read_image

CLASS_NAMES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")  # file labels 1..7
CLASS_ABBREVIATIONS = ("SU", "FE", "DI", "HA", "SA", "AN", "NE")
SPLITS = ("train", "test")
PARTITION_FILE = os.path.join("EmoLabel", "list_patition_label.txt")
IMAGE_DIR = os.path.join("Image", "aligned")
IMAGE_SIZE = 100


def basic_dir(data_dir: str) -> str:
    """The ``basic/`` folder, given either the RAF-DB root (holding ``basic/``) or ``basic/`` itself."""
    for candidate in (os.path.join(data_dir, "basic"), data_dir):
        if os.path.isfile(os.path.join(candidate, PARTITION_FILE)):
            return candidate
    raise FileNotFoundError(
        f"{data_dir}: no RAF-DB basic set found: expected basic/{PARTITION_FILE} or {PARTITION_FILE} in it"
    )


def _read_partition(data_dir: str) -> tuple[str, str, dict[str, list[tuple[str, int, int]]]]:
    """-> (basic dir, partition file, {split: [(image file, label 0..6, 1-based line)]})."""
    basic = basic_dir(data_dir)
    path = os.path.join(basic, PARTITION_FILE)
    entries: dict[str, list[tuple[str, int, int]]] = {split: [] for split in SPLITS}
    with open(path) as f:
        for line, text in enumerate(f, start=1):
            fields = text.split()
            if not fields:  # blank lines hold no image
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{line}: expected 2 columns (image label), got {len(fields)}")
            name, label_text = fields
            try:
                label = int(label_text)
            except ValueError:
                raise ValueError(f"{path}:{line}: unknown label {label_text!r}; expected 1..7") from None
            if not 1 <= label <= len(CLASS_NAMES):
                raise ValueError(f"{path}:{line}: unknown label {label}; expected 1..7")
            split = name.split("_", 1)[0]
            if split not in entries or "_" not in name:
                raise ValueError(f"{path}:{line}: image name {name!r} starts with neither train_ nor test_")
            entries[split].append((name, label - 1, line))
    return basic, path, entries


def read_partition(data_dir: str) -> dict[str, list[tuple[str, int]]]:
    """``{"train": [(image file, label 0..6)], "test": [...]}`` in file order."""
    _, _, entries = _read_partition(data_dir)
    return {split: [(name, label) for name, label, _ in rows] for split, rows in entries.items()}


def _aligned_path(basic: str, name: str) -> str:
    # train_00001.jpg -> Image/aligned/train_00001_aligned.jpg
    return os.path.join(basic, IMAGE_DIR, os.path.splitext(name)[0] + "_aligned.jpg")


def iter_examples(data_dir: str, split: str) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yields ``(image file, uint8 [100, 100, 3], label 0..6)`` for one split, in list order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    basic, path, entries = _read_partition(data_dir)
    for name, label, line in entries[split]:
        image = read_image(_aligned_path(basic, name), (IMAGE_SIZE, IMAGE_SIZE), "RGB", f"{path}:{line}")
        yield name, image, label


def load(data_dir: str, splits: list[str] | None = None) -> Dataset:
    """Loads the requested splits (default: train and test, those present in the list)."""
    basic, path, entries = _read_partition(data_dir)
    wanted = [split for split in SPLITS if entries[split]] if splits is None else list(splits)
    result = {}
    for split in wanted:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        rows = entries[split]
        if not rows:
            raise ValueError(f"{path}: no {split}_ images listed")
        images = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        for i, (name, _, line) in enumerate(rows):
            images[i] = read_image(_aligned_path(basic, name), (IMAGE_SIZE, IMAGE_SIZE), "RGB", f"{path}:{line}")
        result[split] = Split(images, np.asarray([label for _, label, _ in rows], dtype=np.int32))
    if not result:
        raise ValueError(f"{path}: no images listed")
    return Dataset("rafdb", CLASS_NAMES, result)
