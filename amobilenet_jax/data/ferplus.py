"""FERPlus: FER2013 faces with Microsoft's FER+ crowd labels (10 taggers per image).

Two on-disk layouts are read:

* ``folders`` -- what Microsoft's ``generate_training_data.py`` writes:
  ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each with 48x48 grayscale
  PNGs and a header-less ``label.csv`` whose rows are
  ``image_name,"(x, y, w, h)",neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``.
* ``kaggle`` -- Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``) next to FER+'s
  ``fer2013new.csv`` (``Usage,Image name,<10 vote columns>``), row-aligned; a row with an
  empty Image name is an image FER+ removed.

Votes become labels by the rules of the FER+ paper (see ``votes_to_labels``). The
training split follows ``label_mode``; validation and test are always read in
majority mode, because evaluation is on majority labels.

Errors are one line naming the file and row (``DataError``, or ``DataNotFoundError`` for
what is not there). Readers that take ``bad`` (a ``bad_items.BadItems``) hand it each bad
image or row, so that ``data.on_error="skip"`` leaves those out; without it they raise.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image

from amobilenet_jax.data import bad_items, fer2013
from amobilenet_jax.data.bad_items import ITEM_ERRORS, BadItems
from amobilenet_jax.data.dataset import Dataset, Split
from amobilenet_jax.errors import ConfigError, DataError, DataNotFoundError, joined

CLASS_NAMES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
CLASS_ABBREVIATIONS = ("NE", "HA", "SU", "SA", "AN", "DI", "FE", "CO")
VOTE_COLUMNS = CLASS_NAMES + ("unknown", "NF")
FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
KAGGLE_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
LABEL_MODES = ("majority", "distribution")
SPLITS = tuple(FOLDERS)

NUM_CLASSES = len(CLASS_NAMES)
NUM_VOTES = len(VOTE_COLUMNS)
IMAGE_SIZE = 48
LABEL_FILE = "label.csv"
LABEL_COLUMNS = 2 + NUM_VOTES  # image name, face box, ten vote counts
KAGGLE_FILES = ("fer2013.csv", "fer2013new.csv")
KAGGLE_NEW_COLUMNS = ("Usage", "Image name") + VOTE_COLUMNS


def _check_mode(label_mode: str) -> None:
    if label_mode not in LABEL_MODES:
        raise ConfigError(f"label_mode must be one of {list(LABEL_MODES)}, got {label_mode!r}")


def votes_to_labels(votes_Nx10: np.ndarray, label_mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Applies the FER+ label rules to vote counts ``[N, 10]`` (columns as ``VOTE_COLUMNS``).

    Both modes first zero every count of exactly 1: a lone vote is treated as a tagger's
    mistake (the FER+ paper's outlier removal; Microsoft's generator does the same).

    * ``majority``: keep an image when its top column holds MORE than half of the
      remaining votes and is an emotion, not unknown/NF. ``targets`` is None.
    * ``distribution``: keep an image when the 8 emotion columns hold more than half of
      the remaining votes and the argmax over all 10 columns is an emotion; ``targets``
      are the 8 emotion counts normalised to sum 1, the label their argmax (center loss
      needs a hard label). Ties go to the earlier column (np.argmax), so an emotion tied
      with unknown/NF counts as an emotion.

    Returns ``(keep bool [N], labels int32 [N], targets float32 [N, 8] or None)``; labels
    are -1 and targets 0 where ``keep`` is False.
    """
    _check_mode(label_mode)
    votes = np.asarray(votes_Nx10)
    if votes.ndim != 2 or votes.shape[1] != NUM_VOTES:
        raise ValueError(f"votes must have shape [N, {NUM_VOTES}], got {list(votes.shape)}")
    if votes.size and votes.min() < 0:
        raise ValueError("votes must be non-negative counts")
    votes = np.where(votes == 1, 0, votes).astype(np.int64)
    total = votes.sum(1)
    top = votes.argmax(1)
    if label_mode == "majority":
        # Integer form of peak > total / 2: an exact half is not a majority.
        keep = (2 * votes.max(1) > total) & (top < NUM_CLASSES)
        labels = np.where(keep, top, -1).astype(np.int32)
        return keep, labels, None
    emotions = votes[:, :NUM_CLASSES]
    emotion_total = emotions.sum(1)
    keep = (2 * emotion_total > total) & (top < NUM_CLASSES)
    targets = np.zeros(emotions.shape, np.float32)
    targets[keep] = emotions[keep] / emotion_total[keep, None]
    labels = np.where(keep, emotions.argmax(1), -1).astype(np.int32)
    return keep, labels, targets


def read_image(path: str, size: tuple[int, int], mode: str, where: str) -> np.ndarray:
    """Decodes one image file and checks its size ``(height, width)`` and PIL mode.

    ``where`` is the ``file:line`` of the list that named the image, so that an error
    points at the row to fix. Returns uint8 ``[H, W, C]``. Shared with the RAF-DB reader.
    Raises ``DataNotFoundError`` for a missing file, ``DataError`` for one that does not
    decode (truncated, not an image) or has another size or mode.
    """
    try:
        with Image.open(path) as image:
            found = (image.height, image.width, image.mode)
            # A writable copy (np.asarray of a PIL image is read-only); decoding happens here,
            # which is where a truncated file fails.
            array = np.array(image) if found == (*size, mode) else None
    except FileNotFoundError:
        raise DataNotFoundError(f"{where}: image file not found: {path}") from None
    # PIL's UnidentifiedImageError is an OSError; a PNG with a broken chunk can raise SyntaxError
    # or ValueError, a giant one DecompressionBombError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{where}: cannot decode image {path}: {joined(e)}") from None
    if array is None:
        raise DataError(
            f"{where}: image {path} is {found[0]}x{found[1]} {found[2]}, expected {size[0]}x{size[1]} {mode}"
        )
    return array if array.ndim == 3 else array[..., None]


def read_label_csv(path: str, bad: BadItems | None = None) -> tuple[list[str], np.ndarray, list[int]]:
    """Reads a FER+ ``label.csv`` (no header) -> (image names, votes int32 ``[N, 10]``, the 1-based
    line number of each row); bad rows go to ``bad``.

    A file with no row at all, or none left after skipping, is an error in both modes.
    """
    bad = bad_items.handler(bad)
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{path}: file not found")
    names: list[str] = []
    lines: list[int] = []
    rows: list[list[int]] = []
    skipped = len(bad)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            for row in reader:
                line = reader.line_num
                if not row:  # a blank (e.g. trailing) line holds no image
                    continue
                try:
                    if len(row) != LABEL_COLUMNS:
                        raise DataError(f"{path}:{line}: expected {LABEL_COLUMNS} columns, got {len(row)}")
                    name = row[0].strip()
                    if not name:
                        raise DataError(f"{path}:{line}: empty image name")
                    votes = _parse_votes(row[2:], path, line)
                except DataError as e:
                    bad.handle(e)
                    continue
                names.append(name)
                lines.append(line)
                rows.append(votes)
        # A binary file, a NUL byte: not a label list at all.
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: not a FER+ label.csv: {joined(e)}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not a FER+ label.csv (not text): {joined(e)}") from None
    if not names:
        skipped = len(bad) - skipped
        detail = f"all {skipped} rows were bad (data.on_error=skip)" if skipped else "no image rows (empty file)"
        raise DataError(f"{path}: {detail}")
    votes = np.asarray(rows, dtype=np.int32).reshape(len(rows), NUM_VOTES)
    return names, votes, lines


def _parse_votes(fields: list[str], path: str, line: int) -> list[int]:
    votes = []
    for column, text in zip(VOTE_COLUMNS, fields):
        try:
            count = int(text)
        except ValueError:
            raise DataError(f"{path}:{line}: vote {column!r} is not an integer: {text!r}") from None
        if count < 0:
            raise DataError(f"{path}:{line}: vote {column!r} is negative: {count}")
        votes.append(count)
    return votes


def _label_csv_of(split_dir: str) -> str:
    if not os.path.isdir(split_dir):
        raise DataNotFoundError(f"{split_dir}: split folder not found")
    path = os.path.join(split_dir, LABEL_FILE)
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{split_dir}: split folder has no {LABEL_FILE}")
    return path


def read_folder_split(split_dir: str, label_mode: str = "majority", bad: BadItems | None = None) -> Split:
    """Reads one ``FER2013*/`` folder; only the images the label rule keeps are decoded."""
    _check_mode(label_mode)
    bad = bad_items.handler(bad)
    label_csv = _label_csv_of(split_dir)
    names, votes, lines = read_label_csv(label_csv, bad)
    keep, labels, targets = votes_to_labels(votes, label_mode)
    kept = np.flatnonzero(keep)
    # Preallocated, filled by a plain loop: 28,558 PNGs of 48x48 decode in seconds on one
    # core, and threads bought nothing measurable here.
    images = np.empty((kept.size, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    good = np.ones(kept.size, bool)
    for out, i in enumerate(kept):
        path = os.path.join(split_dir, names[i])
        try:
            images[out] = read_image(path, (IMAGE_SIZE, IMAGE_SIZE), "L", f"{label_csv}:{lines[i]}")
        except ITEM_ERRORS as e:
            bad.handle(e)
            good[out] = False
    if not good.all():  # only then: indexing copies the whole array
        images, kept = images[good], kept[good]
    return Split(images, labels[kept], None if targets is None else targets[kept])


def iter_folder_examples(split_dir: str, bad: BadItems | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yields ``(image name, uint8 [48, 48, 1], votes int32 [10])`` for every row, in csv order."""
    bad = bad_items.handler(bad)
    label_csv = _label_csv_of(split_dir)
    names, votes, lines = read_label_csv(label_csv, bad)
    for name, row_votes, line in zip(names, votes, lines):
        path = os.path.join(split_dir, name)
        try:
            image = read_image(path, (IMAGE_SIZE, IMAGE_SIZE), "L", f"{label_csv}:{line}")
        except ITEM_ERRORS as e:
            bad.handle(e)
            continue
        yield name, image, row_votes


def count_folder_rows(split_dir: str) -> int:
    """Non-blank lines of a folder's label.csv (cheap: for progress lines); 0 when there is none."""
    try:
        with open(os.path.join(split_dir, LABEL_FILE), "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _kaggle_rows(
    fer2013_csv: str, fer2013new_csv: str, bad: BadItems
) -> Iterator[tuple[fer2013.Row, str, list[str], int]]:
    """Walks the Kaggle pair in lockstep -> (fer2013.csv row, image name, vote fields, fer2013new.csv line).

    Both files are streamed (fer2013.csv is ~290 MB); alignment is checked on every row. A
    malformed row in either file goes to ``bad`` with its partner, so the walk stays aligned;
    rows of the two files that disagree on Usage mean the pair is misaligned: always an error.
    """
    if not os.path.isfile(fer2013new_csv):
        raise DataNotFoundError(f"{fer2013new_csv}: file not found")
    pixel_rows = fer2013.read_rows(fer2013_csv, keep_bad=True)
    with open(fer2013new_csv, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        columns = fer2013.header_columns(fer2013new_csv, header, KAGGLE_NEW_COLUMNS)
        i_usage, i_name = columns["Usage"], columns["Image name"]
        i_votes = [columns[name] for name in VOTE_COLUMNS]
        line = 1
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            usage = row[i_usage].strip() if len(row) > i_usage else ""
            problem = ""
            if len(row) != len(header):
                problem = f"{fer2013new_csv}:{line}: expected {len(header)} columns, got {len(row)}"
            elif usage not in KAGGLE_USAGE.values():
                problem = (
                    f"{fer2013new_csv}:{line}: unknown Usage {usage!r}; expected one of {list(KAGGLE_USAGE.values())}"
                )
            if problem:
                bad.handle(DataError(problem))
            pixel_row = next(pixel_rows, None)
            if pixel_row is None:
                raise DataError(
                    f"{fer2013new_csv}:{line}: {fer2013_csv} has no row matching this one "
                    f"(the pair is misaligned: fer2013.csv has fewer rows)"
                )
            if problem:
                continue
            if pixel_row.problem:
                bad.handle(DataError(pixel_row.problem))
                continue
            if pixel_row.usage != usage:
                raise DataError(
                    f"{fer2013new_csv}:{line}: Usage {usage!r} differs from {pixel_row.usage!r} at "
                    f"{fer2013_csv}:{pixel_row.line} (the pair is misaligned)"
                )
            yield pixel_row, row[i_name].strip(), [row[i] for i in i_votes], line
        extra = next(pixel_rows, None)
        if extra is not None:
            raise DataError(
                f"{fer2013_csv}:{extra.line}: {fer2013new_csv} ends at line {line} with no row matching this one "
                f"(the pair is misaligned: fer2013new.csv has fewer rows)"
            )


def read_kaggle(
    fer2013_csv: str, fer2013new_csv: str, modes: dict[str, str], bad: BadItems | None = None
) -> dict[str, Split]:
    """Reads splits of the Kaggle pair ``fer2013.csv`` + ``fer2013new.csv`` in one pass; ``modes`` maps
    split -> label mode."""
    bad = bad_items.handler(bad)
    for split, mode in modes.items():
        fer2013.check_split(split, SPLITS)
        _check_mode(mode)
    by_usage = {KAGGLE_USAGE[split]: split for split in modes}
    images: dict[str, list[np.ndarray]] = {split: [] for split in modes}
    labels: dict[str, list[int]] = {split: [] for split in modes}
    targets: dict[str, list[np.ndarray]] = {split: [] for split in modes}
    for pixel_row, name, vote_fields, line in _kaggle_rows(fer2013_csv, fer2013new_csv, bad):
        split = by_usage.get(pixel_row.usage)
        if split is None or not name:  # another split, or an image FER+ removed
            continue
        try:
            votes = np.asarray([_parse_votes(vote_fields, fer2013new_csv, line)])
            keep, label, target = votes_to_labels(votes, modes[split])
            if not keep[0]:
                continue  # dropped by the label rule: its pixels are never parsed
            image = fer2013.parse_pixels(pixel_row.pixels, fer2013_csv, pixel_row.line)
        except DataError as e:
            bad.handle(e)
            continue
        images[split].append(image)
        labels[split].append(int(label[0]))
        if target is not None:
            targets[split].append(target[0])
    result = {}
    for split, mode in modes.items():
        n = len(labels[split])
        result[split] = Split(
            np.stack(images[split]) if n else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8),
            np.asarray(labels[split], dtype=np.int32),
            None if mode == "majority" else np.asarray(targets[split], np.float32).reshape(n, NUM_CLASSES),
        )
    return result


def iter_kaggle_examples(
    fer2013_csv: str, fer2013new_csv: str, split: str, bad: BadItems | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yields ``(Image name, uint8 [48, 48, 1], votes int32 [10])`` for every image FER+ kept in a split.

    Names are FER+'s Image name (e.g. ``fer0000000.png``), the same names the folders
    layout uses; rows with an empty Image name (removed by FER+) are skipped.
    """
    fer2013.check_split(split, SPLITS)
    bad = bad_items.handler(bad)
    usage = KAGGLE_USAGE[split]
    for pixel_row, name, vote_fields, line in _kaggle_rows(fer2013_csv, fer2013new_csv, bad):
        if pixel_row.usage != usage or not name:
            continue
        try:
            votes = np.asarray(_parse_votes(vote_fields, fer2013new_csv, line), dtype=np.int32)
            image = fer2013.parse_pixels(pixel_row.pixels, fer2013_csv, pixel_row.line)
        except DataError as e:
            bad.handle(e)
            continue
        yield name, image, votes


def count_kaggle_rows(fer2013new_csv: str, split: str) -> int:
    """Rows of a split that FER+ kept, from fer2013new.csv alone (cheap: for progress lines); 0 on any trouble."""
    try:
        with open(fer2013new_csv, newline="") as f:
            reader = csv.reader(f)
            columns = fer2013.header_columns(fer2013new_csv, next(reader, None), KAGGLE_NEW_COLUMNS)
            i_usage, i_name = columns["Usage"], columns["Image name"]
            width = max(i_usage, i_name)
            usage = KAGGLE_USAGE[split]
            return sum(
                1 for row in reader if len(row) > width and row[i_usage].strip() == usage and row[i_name].strip()
            )
    except (OSError, csv.Error, UnicodeDecodeError, DataError):
        return 0


def _kaggle_paths(data_dir: str) -> tuple[str, str]:
    return os.path.join(data_dir, KAGGLE_FILES[0]), os.path.join(data_dir, KAGGLE_FILES[1])


def detect_layout(data_dir: str) -> str:
    """``"folders"`` if any ``FER2013*/`` split folder is present, else ``"kaggle"`` if the csv pair is."""
    if not os.path.isdir(data_dir):
        raise DataNotFoundError(f"{data_dir}: FERPlus data directory not found")
    if any(os.path.isdir(os.path.join(data_dir, folder)) for folder in FOLDERS.values()):
        return "folders"
    if all(os.path.isfile(path) for path in _kaggle_paths(data_dir)):
        return "kaggle"
    raise DataNotFoundError(
        f"{data_dir}: no FERPlus data found: expected {'/, '.join(FOLDERS.values())}/ folders with {LABEL_FILE} "
        f"(Microsoft's generate_training_data.py layout) or the Kaggle pair {' + '.join(KAGGLE_FILES)}"
    )


def split_names(data_dir: str) -> list[str]:
    """Splits present in ``data_dir``, in the order train, valid, test."""
    if detect_layout(data_dir) == "folders":
        return [split for split in SPLITS if os.path.isdir(os.path.join(data_dir, FOLDERS[split]))]
    # fer2013new.csv is small (no pixels): its Usage column says which splits exist.
    fer2013new_csv = _kaggle_paths(data_dir)[1]
    with open(fer2013new_csv, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        i_usage = fer2013.header_columns(fer2013new_csv, header, KAGGLE_NEW_COLUMNS)["Usage"]
        usages = {row[i_usage].strip() for row in reader if len(row) > i_usage}
    return [split for split in SPLITS if KAGGLE_USAGE[split] in usages]


def load(
    data_dir: str, label_mode: str = "majority", splits: list[str] | None = None, on_error: str = "raise"
) -> Dataset:
    """Loads FERPlus from either layout; ``label_mode`` applies to train only (valid/test are majority).

    ``on_error="skip"`` leaves out bad images and rows, prints how many and which, and lists
    them in ``Dataset.skipped``.
    """
    _check_mode(label_mode)
    bad = BadItems(on_error)
    present = split_names(data_dir)
    wanted = present if splits is None else list(splits)
    for split in wanted:
        fer2013.check_split(split, SPLITS)
        if split not in present:
            raise DataNotFoundError(f"{data_dir}: split {split!r} not found; present: {present}")
    if not wanted:
        raise DataNotFoundError(f"{data_dir}: no splits to load")
    modes = {split: label_mode if split == "train" else "majority" for split in wanted}
    if detect_layout(data_dir) == "folders":
        result = {
            split: read_folder_split(os.path.join(data_dir, FOLDERS[split]), modes[split], bad) for split in wanted
        }
    else:
        result = read_kaggle(*_kaggle_paths(data_dir), modes, bad)
    bad_items.report("ferplus", bad.reasons)
    return Dataset("ferplus", CLASS_NAMES, result, skipped=bad.reasons, source=data_dir)
