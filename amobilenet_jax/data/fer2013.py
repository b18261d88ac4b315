"""FER2013 with its original 7-class labels, read from Kaggle's ``fer2013.csv``.

The file has a header ``emotion,pixels,Usage`` and one row per image: the label
0..6 (anger, disgust, fear, happiness, sadness, surprise, neutral), 2304
space-separated gray values of a 48x48 face, and the split as a Usage value
(Training, PublicTest, PrivateTest). Columns are found by header name, so
variants that order them differently still read.

The row scanner and pixel parser here are shared with the FER+ reader
(``ferplus.read_kaggle``), which pairs ``fer2013.csv`` with ``fer2013new.csv``.
Errors are one line naming the file and line (``DataError`` / ``DataNotFoundError``); a
reader given ``bad`` (a ``bad_items.BadItems``) hands it each bad row instead.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from amobilenet_jax.data import bad_items
from amobilenet_jax.data.bad_items import BadItems
from amobilenet_jax.data.dataset import Dataset, Split
from amobilenet_jax.errors import DataError, DataNotFoundError

CLASS_NAMES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")  # emotion 0..6
CLASS_ABBREVIATIONS = ("AN", "DI", "FE", "HA", "SA", "SU", "NE")
USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
SPLITS = tuple(USAGE)
FILE_NAME = "fer2013.csv"
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
COLUMNS = ("emotion", "pixels", "Usage")

_USAGE_VALUES = tuple(USAGE.values())


class Row(NamedTuple):
    """One data row of fer2013.csv, unparsed apart from the Usage check."""

    line: int  # 1-based line number in the file (the header is line 1)
    index: int  # 0-based data row index
    emotion: str
    pixels: str
    usage: str  # "" when the row is malformed
    problem: str = ""  # why the row is malformed (one line, "file:line: ..."); "" when it is fine


def csv_path(data_dir: str) -> str:
    """``data_dir`` itself when it is a file, else ``data_dir/fer2013.csv``."""
    if os.path.isfile(data_dir):
        return data_dir
    path = os.path.join(data_dir, FILE_NAME)
    if os.path.isfile(path):
        return path
    raise DataNotFoundError(f"{data_dir}: no {FILE_NAME} here (pass Kaggle's {FILE_NAME} or the folder holding it)")


def check_split(split: str, known: tuple[str, ...] = SPLITS) -> None:
    if split not in known:
        raise ValueError(f"unknown split {split!r}; expected one of {list(known)}")


def header_columns(path: str, header: list[str] | None, required: tuple[str, ...]) -> dict[str, int]:
    """Column index of every required name in a csv header (line 1); names are matched after stripping spaces."""
    if header is None:
        raise DataError(f"{path}:1: empty file, expected a header with columns {','.join(required)}")
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [name for name in required if name not in columns]
    if missing:
        raise DataError(
            f"{path}:1: header lacks column(s) {missing}; expected {','.join(required)}, got {','.join(header)!r}"
        )
    return columns


def read_rows(path: str, keep_bad: bool = False) -> Iterator[Row]:
    """Streams the rows of fer2013.csv (the real one is ~290 MB, so nothing is held).

    Checks the column count and Usage of every row; the label and pixels are left to
    the caller, which parses only the rows it keeps. A malformed row raises ``DataError``,
    or with ``keep_bad`` is yielded with ``problem`` set (so that a caller walking a second,
    row-aligned file stays aligned, or skips it). Row indices count every data row.
    """
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{path}: file not found")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            columns = header_columns(path, header, COLUMNS)
            i_emotion, i_pixels, i_usage = (columns[name] for name in COLUMNS)
            index = 0
            for row in reader:
                line = reader.line_num
                if not row:  # a blank line (e.g. a trailing one) holds no image
                    continue
                usage = row[i_usage].strip() if len(row) == len(header) else ""
                problem = ""
                if len(row) != len(header):
                    problem = f"{path}:{line}: expected {len(header)} columns, got {len(row)}"
                elif usage not in _USAGE_VALUES:
                    problem = f"{path}:{line}: unknown Usage {usage!r}; expected one of {list(_USAGE_VALUES)}"
                if problem and not keep_bad:
                    raise DataError(problem)
                if problem:
                    yield Row(line, index, "", "", "", problem)
                else:
                    yield Row(line, index, row[i_emotion], row[i_pixels], usage)
                index += 1
        except csv.Error as e:  # a NUL byte, a runaway quote: not the Kaggle CSV
            raise DataError(f"{path}:{reader.line_num}: not a CSV file: {bad_items.one_line(e)}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not a CSV file (not text): {bad_items.one_line(e)}") from None


def parse_pixels(text: str, path: str, line: int) -> np.ndarray:
    """2304 space-separated gray values -> uint8 ``[48, 48, 1]``."""
    # Fast path: numpy's C parser (~35 us a row against ~200 us for split + int). It stops
    # quietly at junk with only a warning, so warnings become errors here and anything odd
    # falls through to the slow path, which says exactly what is wrong.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        if values.size == NUM_PIXELS and values.min() >= 0 and values.max() <= 255:
            return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 1)
    except (ValueError, DeprecationWarning):
        pass
    tokens = text.split()
    if len(tokens) != NUM_PIXELS:
        raise DataError(f"{path}:{line}: expected {NUM_PIXELS} pixels (48x48), got {len(tokens)}")
    for k, token in enumerate(tokens):
        try:
            value = int(token)
        except ValueError:
            raise DataError(f"{path}:{line}: pixel {k} is not an integer: {token!r}") from None
        if not 0 <= value <= 255:
            raise DataError(f"{path}:{line}: pixel {k} is {value}, outside 0..255")
    raise DataError(f"{path}:{line}: cannot parse the pixels column")  # unreachable in practice


def parse_label(text: str, path: str, line: int) -> int:
    """The emotion column -> 0..6."""
    try:
        label = int(text)
    except ValueError:
        raise DataError(f"{path}:{line}: unknown label {text!r}; expected an integer 0..6") from None
    if not 0 <= label < len(CLASS_NAMES):
        raise DataError(f"{path}:{line}: unknown label {label}; expected 0..6")
    return label


def _parse_row(row: Row, path: str, bad: BadItems) -> tuple[np.ndarray, int] | None:
    """(image, label) of a row, or None when ``bad`` skipped it."""
    try:
        if row.problem:
            raise DataError(row.problem)
        return parse_pixels(row.pixels, path, row.line), parse_label(row.emotion, path, row.line)
    except DataError as e:
        bad.handle(e)
        return None


def iter_examples(data_dir: str, split: str, bad: BadItems | None = None) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yields ``("<Usage>_<row index>", uint8 [48, 48, 1], label 0..6)`` for one split, in file order.

    A malformed row, whose split cannot be told, goes to ``bad`` on the walk of every split.
    """
    check_split(split)
    bad = bad_items.handler(bad)
    path = csv_path(data_dir)
    for row in read_rows(path, keep_bad=True):
        if row.usage == USAGE[split] or row.problem:
            parsed = _parse_row(row, path, bad)
            if parsed is not None:
                yield (f"{row.usage}_{row.index}", *parsed)


def load(data_dir: str, splits: list[str] | None = None, on_error: str = "raise") -> Dataset:
    """Reads the requested splits (default: every split present in the file) in one pass.

    ``on_error="skip"`` leaves out bad rows, prints how many and which, and lists them in
    ``Dataset.skipped``.
    """
    bad = BadItems(on_error)
    path = csv_path(data_dir)
    wanted = list(SPLITS) if splits is None else list(splits)
    for split in wanted:
        check_split(split)
    by_usage = {USAGE[split]: split for split in wanted}
    images: dict[str, list[np.ndarray]] = {split: [] for split in wanted}
    labels: dict[str, list[int]] = {split: [] for split in wanted}
    for row in read_rows(path, keep_bad=True):
        split = by_usage.get(row.usage)
        if split is not None or row.problem:
            parsed = _parse_row(row, path, bad)
            if parsed is not None:
                images[split].append(parsed[0])
                labels[split].append(parsed[1])
    result = {}
    for split in wanted:
        if not labels[split]:
            if splits is None:  # asked for "everything": a split absent from the file is simply not there
                continue
            raise DataNotFoundError(f"{path}: no usable rows with Usage {USAGE[split]!r} (split {split!r})")
        result[split] = Split(np.stack(images[split]), np.asarray(labels[split], dtype=np.int32))
    if not result:
        raise DataError(f"{path}: no usable data rows" + (f" ({len(bad)} bad, skipped)" if len(bad) else ""))
    bad_items.report("fer2013", bad.reasons)
    return Dataset("fer2013", CLASS_NAMES, result, skipped=bad.reasons, source=data_dir)
