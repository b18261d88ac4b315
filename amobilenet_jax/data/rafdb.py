"""RAF-DB basic emotions (7 classes), in the layout its authors release::

    basic/EmoLabel/list_patition_label.txt     "train_00001.jpg 5" per line (sic: "patition")
    basic/Image/aligned/train_00001_aligned.jpg   100x100 RGB face

Labels in the list are 1..7 = surprise, fear, disgust, happiness, sadness, anger,
neutral; they are returned as 0..6 in that order. The split is the name's prefix.
Errors are one line naming the file and line (``DataError`` / ``DataNotFoundError``); a
reader given ``bad`` (a ``bad_items.BadItems``) hands it each bad row or image instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from amobilenet_jax.data import bad_items
from amobilenet_jax.data.bad_items import ITEM_ERRORS, BadItems
from amobilenet_jax.data.dataset import Dataset, Split
from amobilenet_jax.data.ferplus import read_image
from amobilenet_jax.errors import DataError, DataNotFoundError, joined

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
    raise DataNotFoundError(
        f"{data_dir}: no RAF-DB basic set found: expected basic/{PARTITION_FILE} or {PARTITION_FILE} in it"
    )


def _read_partition(
    data_dir: str, bad: BadItems | None = None
) -> tuple[str, str, dict[str, list[tuple[str, int, int]]]]:
    """-> (basic dir, partition file, {split: [(image file, label 0..6, 1-based line)]}); bad rows go to ``bad``."""
    bad = bad_items.handler(bad)
    basic = basic_dir(data_dir)
    path = os.path.join(basic, PARTITION_FILE)
    entries: dict[str, list[tuple[str, int, int]]] = {split: [] for split in SPLITS}
    try:
        with open(path) as f:
            for line, text in enumerate(f, start=1):
                fields = text.split()
                if not fields:  # blank lines hold no image
                    continue
                try:
                    name, label = _parse_row(fields, path, line)
                except DataError as e:
                    bad.handle(e)
                    continue
                entries[name.split("_", 1)[0]].append((name, label, line))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a RAF-DB list (not text): {joined(e)}") from None
    return basic, path, entries


def _parse_row(fields: list[str], path: str, line: int) -> tuple[str, int]:
    """``["train_00001.jpg", "5"]`` -> ("train_00001.jpg", 4)."""
    if len(fields) != 2:
        raise DataError(f"{path}:{line}: expected 2 columns (image label), got {len(fields)}")
    name, label_text = fields
    try:
        label = int(label_text)
    except ValueError:
        raise DataError(f"{path}:{line}: unknown label {label_text!r}; expected 1..7") from None
    if not 1 <= label <= len(CLASS_NAMES):
        raise DataError(f"{path}:{line}: unknown label {label}; expected 1..7")
    if name.split("_", 1)[0] not in SPLITS or "_" not in name:
        raise DataError(f"{path}:{line}: image name {name!r} starts with neither train_ nor test_")
    return name, label - 1


def read_partition(data_dir: str, bad: BadItems | None = None) -> dict[str, list[tuple[str, int]]]:
    """``{"train": [(image file, label 0..6)], "test": [...]}`` in file order."""
    _, _, entries = _read_partition(data_dir, bad)
    return {split: [(name, label) for name, label, _ in rows] for split, rows in entries.items()}


def _aligned_path(basic: str, name: str) -> str:
    # train_00001.jpg -> Image/aligned/train_00001_aligned.jpg
    return os.path.join(basic, IMAGE_DIR, os.path.splitext(name)[0] + "_aligned.jpg")


def _read_images(
    basic: str, path: str, rows: list[tuple[str, int, int]], bad: BadItems
) -> Iterator[tuple[int, np.ndarray]]:
    """(row index, uint8 [100, 100, 3]) for each listed image that reads; the others go to ``bad``."""
    for i, (name, _, line) in enumerate(rows):
        try:
            image = read_image(_aligned_path(basic, name), (IMAGE_SIZE, IMAGE_SIZE), "RGB", f"{path}:{line}")
        except ITEM_ERRORS as e:
            bad.handle(e)
            continue
        yield i, image


def iter_examples(data_dir: str, split: str, bad: BadItems | None = None) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yields ``(image file, uint8 [100, 100, 3], label 0..6)`` for one split, in list order.

    A bad row of the list file goes to ``bad`` on the walk of every split (the list is read whole).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    bad = bad_items.handler(bad)
    basic, path, entries = _read_partition(data_dir, bad)
    rows = entries[split]
    for i, image in _read_images(basic, path, rows, bad):
        yield rows[i][0], image, rows[i][1]


def load(data_dir: str, splits: list[str] | None = None, on_error: str = "raise") -> Dataset:
    """Loads the requested splits (default: train and test, those present in the list).

    ``on_error="skip"`` leaves out bad rows and images, prints how many and which, and lists
    them in ``Dataset.skipped``.
    """
    bad = BadItems(on_error)
    basic, path, entries = _read_partition(data_dir, bad)
    wanted = [split for split in SPLITS if entries[split]] if splits is None else list(splits)
    result = {}
    for split in wanted:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        rows = entries[split]
        if not rows:
            raise DataNotFoundError(f"{path}: no usable {split}_ images listed")
        images = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        good = np.zeros(len(rows), bool)
        for i, image in _read_images(basic, path, rows, bad):
            images[i], good[i] = image, True
        labels = np.asarray([label for _, label, _ in rows], dtype=np.int32)
        if not good.all():
            images, labels = images[good], labels[good]
        if not len(labels):
            raise DataError(f"{path}: every {split}_ image was bad ({len(bad)} skipped)")
        result[split] = Split(images, labels)
    if not result:
        raise DataError(f"{path}: no usable images listed" + (f" ({len(bad)} bad, skipped)" if len(bad) else ""))
    bad_items.report("rafdb", bad.reasons)
    return Dataset("rafdb", CLASS_NAMES, result, skipped=bad.reasons, source=data_dir)
