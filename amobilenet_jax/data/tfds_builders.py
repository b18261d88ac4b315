"""Prepare once, load fast: TFDS builders that turn the official data layouts into ArrayRecord files.

The first ``prepare`` decodes every image or CSV row once, through the project's readers (so
the pixels are what ``<reader>.load`` gives), and writes raw uint8 pixels into ArrayRecord files
with TFDS; later runs only read those back. No TensorFlow: images are bytes-encoded
``tfds.features.Tensor`` (``tfds.features.Image`` decodes with ``tf.image``), examples are
TFDS's bundled ``tf.train.Example`` protos, and ``DatasetInfo`` is built directly.

Layout: ``<cache_dir>/<name>/<version>/`` (``cache_dir`` defaults to ``<data_dir>/.tfds``).
TFDS builds in an ``incomplete.*`` directory and renames it on success, so an interrupted or
failed preparation never looks prepared. FERPlus keeps the raw votes; the label mode applies
at load time.

Bad input (``data.on_error``): a bad image or row is a one-line error and nothing is left
prepared; with ``"skip"`` it is left out and listed in the copy's ``skipped.json``, which every
load reports. A copy that skipped items is refused to a ``"raise"`` run: nothing is used with
items missing that its run did not ask to skip.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from tensorflow_datasets.proto import tf_example_pb2

from amobilenet_jax.data import bad_items
from amobilenet_jax.data.bad_items import BadItems
from amobilenet_jax.data.dataset import Dataset, Split
from amobilenet_jax.errors import ConfigError, DataError, DataNotFoundError, UserError, joined

VERSION = "1.0.0"
DEFAULT_CACHE_SUBDIR = ".tfds"
STALE_INCOMPLETE_S = 3600.0  # an unfinished preparation untouched this long is dead
SKIPPED_FILE = "skipped.json"  # beside the ArrayRecord files: {"on_error": ..., "skipped": [reason, ...]}
PROGRESS_INTERVAL_S = 10.0  # seconds between progress lines while preparing
_HOMEPAGE = {
    "ferplus": "https://github.com/microsoft/FERPlus",
    "rafdb": "http://www.whdeng.cn/raf/model1.html",
    "fer2013": "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge",
}


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    """DatasetInfo of a data set that exists only on this machine."""

    def initialize_from_bucket(self) -> None:
        """No-op. TFDS calls this for every builder not yet prepared, to fetch hosted metadata;
        these data sets are never hosted, and TFDS creates (and never removes) an empty
        ``/tmp/tmp*tfds`` dir on each call before finding that out."""


class _Progress:
    """Plain progress lines on stdout, flushed: ``preparing ferplus train: 12000/28709 images, 41 s``.

    A line at each new tenth of the total (at most one per ``interval_s / 5``), at least one per
    ``interval_s``, and one at the end: a time check per image costs nothing next to decoding it,
    and lines (not a redrawn bar) read well in a log file.
    """

    def __init__(self, what: str, total: int | None, interval_s: float | None = None):
        self.what, self.total = what, total
        self.interval_s = PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self.start = self.last = time.monotonic()
        self.tenths = 0  # tenths of the total done at the last line

    def update(self, done: int, skipped: int) -> None:
        now = time.monotonic()
        since = now - self.last
        tenths = done * 10 // self.total if self.total else 0
        if since >= self.interval_s or (tenths > self.tenths and since >= self.interval_s / 5):
            self.last, self.tenths = now, tenths
            self._print(done, skipped, now, "")

    def finish(self, done: int, skipped: int) -> None:
        self._print(done, skipped, time.monotonic(), ", done")

    def _print(self, done: int, skipped: int, now: float, suffix: str) -> None:
        count = f"{done}/{self.total}" if self.total else str(done)
        skips = f", {skipped} skipped" if skipped else ""
        print(f"{self.what}: {count} images, {now - self.start:.0f} s{skips}{suffix}", flush=True)


class _ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common part: one split per source split present, examples in source order.

    ``skip_registration``: these builders are instantiated directly, never looked up by name, so
    they stay out of TFDS's global registry (and cannot clash with a catalogue data set).
    """

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {"1.0.0": "Raw uint8 pixels (bytes-encoded tensors) and labels; source order kept."}
    IMAGE_SHAPE: tuple[int, int, int] = (0, 0, 0)
    LABEL_KEY = "label"
    SPLIT_ORDER: tuple[str, ...] = ()
    DESCRIPTION = ""

    def __init__(self, *, on_error: str = "raise", splits: Sequence[str] | None = None, **kwargs: Any):
        """``on_error`` and ``splits`` shape one preparation, not the copy's identity (a
        ``BuilderConfig`` would put each in its own directory); the rest goes to TFDS.

        Args:
          on_error: ``data.on_error``; ``self.bad`` collects what the readers skip.
          splits: the splits to prepare; None: every split present in the data.
        """
        self.bad = BadItems(on_error)
        self.splits_to_prepare = None if splits is None else tuple(splits)
        super().__init__(**kwargs)

    @classmethod
    def reader(cls) -> Any:
        """The project's reader module for this data set (class names, slow-path ``load``)."""
        return importlib.import_module(f"amobilenet_jax.data.{cls.name}")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This file.

        TFDS's own version tests ``importlib_resources.abc.Traversable`` for builders defined in a
        package, but TFDS does not install ``importlib_resources`` on newer Pythons
        (tensorflow/datasets#11212): preparing would fail with ModuleNotFoundError. TFDS only
        uses this path to look for a ``checksums.tsv`` beside it.
        """
        return epath.Path(__file__)

    @classmethod
    def source_splits(cls, source_dir: str) -> list[str]:
        """Splits present in the user's data, in ``SPLIT_ORDER``.

        Bad rows are passed over here, whatever ``on_error``: generating the split meets them
        again and raises or skips them then.
        """
        raise NotImplementedError

    @classmethod
    def source_splits_if_cheap(cls, source_dir: str) -> list[str] | None:
        """``source_splits`` when it reads no more than a listing or a small label file, else None.

        Runs on every ``prepare`` of an already prepared copy, to notice a split added since.
        """
        return cls.source_splits(source_dir)

    def _source_examples(self, source_dir: str, split: str) -> Iterator[tuple[str, np.ndarray, Any]]:
        """``(name, image, label or votes)`` from the project's reader, in source order; bad items to ``self.bad``."""
        raise NotImplementedError

    def _expected_count(self, source_dir: str, split: str) -> int | None:
        """How many examples ``split`` should have, when a cheap look tells (for progress lines)."""
        return None

    def _label_feature(self) -> tfds.features.FeatureConnector:
        return tfds.features.ClassLabel(names=self.reader().CLASS_NAMES)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            # encoding="bytes": one bytes field, read back with np.frombuffer; the default would
            # store every pixel as an int64 varint (slower to parse, larger on disk).
            "image": tfds.features.Tensor(shape=self.IMAGE_SHAPE, dtype=np.uint8, encoding="bytes"),
            "name": tfds.features.Text(),
            self.LABEL_KEY: self._label_feature(),
        }
        return _LocalDatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            homepage=_HOMEPAGE[self.name],
            # Keys are 0..N-1 and kept in order, so prepared == <reader>.load() row for row.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        source_dir = os.fspath(dl_manager.manual_dir)
        splits = self.source_splits(source_dir)
        if not splits:
            instructions = joined(self.MANUAL_DOWNLOAD_INSTRUCTIONS)
            raise DataNotFoundError(f"{source_dir}: no {self.name} split found. {instructions}")
        if self.splits_to_prepare is not None:
            _check_splits(self.name, source_dir, self.splits_to_prepare, splits, "present")
            splits = [split for split in splits if split in self.splits_to_prepare]
        return {split: self._generate_examples(source_dir, split) for split in splits}

    def _generate_examples(self, source_dir: str, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            total = self._expected_count(source_dir, split)
        except UserError:  # the reader below says what is wrong, with the file and row
            total = None
        progress = _Progress(f"preparing {self.name} {split}", total)
        skipped_before = len(self.bad)
        count = 0
        # A plain loop: a reader thread ahead of TFDS's serializer bought nothing on 2 cores (GIL).
        for name, image, label in self._source_examples(source_dir, split):
            yield count, {"image": image, "name": name, self.LABEL_KEY: label}
            count += 1
            progress.update(count, len(self.bad) - skipped_before)
        skipped = len(self.bad) - skipped_before
        if not count:  # TFDS would stop with an AssertionError that names no file
            first = f"; all {skipped} skipped, the first: {self.bad.reasons[skipped_before]}" if skipped else ""
            raise DataError(f"{source_dir}: the {self.name} {split} split has no usable image{first}")
        progress.finish(count, skipped)

    def _download_and_prepare(self, dl_manager: Any, download_config: Any = None) -> None:
        super()._download_and_prepare(dl_manager, download_config)
        # self.data_dir is TFDS's incomplete.* dir here: the record is renamed into place with the
        # copy, or deleted with it.
        record = {"on_error": self.bad.on_error, "skipped": list(self.bad.reasons)}
        _write_json(os.path.join(self.data_dir, SKIPPED_FILE), record)

    def _log_download_bytes(self) -> None:
        """One plain line in place of TFDS's banner ("Downloading and preparing dataset Unknown size ...")."""
        print(f"preparing {self.name} into {self.data_dir} (data.on_error={self.bad.on_error})", flush=True)

    def _log_download_done(self) -> None:
        print(f"prepared {self.name} at {self.data_dir}", flush=True)


class Ferplus(_ManualBuilder, skip_registration=True):
    """FERPlus: FER2013 48x48 grayscale faces with the raw FER+ votes (10 counts per image)."""

    name = "ferplus"
    IMAGE_SHAPE = (48, 48, 1)
    LABEL_KEY = "votes"
    SPLIT_ORDER = ("train", "valid", "test")
    DESCRIPTION = (
        "FER2013 faces with the raw FER+ votes (neutral, happiness, surprise, sadness, anger, disgust, "
        "fear, contempt, unknown, NF); labels are derived at load time (majority or distribution)."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Point data_dir at either FER+ layout:
    * folders, as FERPlus's generate_training_data.py writes them:
      FER2013Train/, FER2013Valid/, FER2013Test/, each with label.csv + fer*.png;
    * Kaggle: fer2013.csv (emotion,pixels,Usage) and FER+'s fer2013new.csv side by side.
    """

    def _label_feature(self) -> tfds.features.FeatureConnector:
        return tfds.features.Tensor(shape=(10,), dtype=np.int32)

    @classmethod
    def source_splits(cls, source_dir: str) -> list[str]:
        from amobilenet_jax.data import ferplus

        return list(ferplus.split_names(source_dir))  # a listing, or fer2013new.csv (no pixels)

    def _source_examples(self, source_dir: str, split: str) -> Iterator[tuple[str, np.ndarray, Any]]:
        from amobilenet_jax.data import ferplus

        if ferplus.detect_layout(source_dir) == "kaggle":
            fer2013_csv, fer2013new_csv = (os.path.join(source_dir, f) for f in ferplus.KAGGLE_FILES)
            return ferplus.iter_kaggle_examples(fer2013_csv, fer2013new_csv, split, self.bad)
        return ferplus.iter_folder_examples(os.path.join(source_dir, ferplus.FOLDERS[split]), self.bad)

    def _expected_count(self, source_dir: str, split: str) -> int | None:
        from amobilenet_jax.data import ferplus

        if ferplus.detect_layout(source_dir) == "kaggle":
            count = ferplus.count_kaggle_rows(os.path.join(source_dir, ferplus.KAGGLE_FILES[1]), split)
        else:
            count = ferplus.count_folder_rows(os.path.join(source_dir, ferplus.FOLDERS[split]))
        return count or None


class Rafdb(_ManualBuilder, skip_registration=True):
    """RAF-DB basic: 100x100 RGB aligned faces, 7 classes."""

    name = "rafdb"
    IMAGE_SHAPE = (100, 100, 3)
    SPLIT_ORDER = ("train", "test")
    DESCRIPTION = "RAF-DB basic emotions, aligned 100x100 RGB faces; labels 0..6 (the list's 1..7 minus one)."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    RAF-DB is released by its authors on request (http://www.whdeng.cn/raf/model1.html). Point
    data_dir at the folder holding basic/EmoLabel/list_patition_label.txt and
    basic/Image/aligned/*_aligned.jpg.
    """

    @classmethod
    def source_splits(cls, source_dir: str) -> list[str]:
        from amobilenet_jax.data import rafdb

        partition = rafdb.read_partition(source_dir, BadItems("skip"))  # the small list file only
        return [split for split in cls.SPLIT_ORDER if partition.get(split)]

    def _source_examples(self, source_dir: str, split: str) -> Iterator[tuple[str, np.ndarray, Any]]:
        from amobilenet_jax.data import rafdb

        return rafdb.iter_examples(source_dir, split, self.bad)

    def _expected_count(self, source_dir: str, split: str) -> int | None:
        from amobilenet_jax.data import rafdb

        return len(rafdb.read_partition(source_dir, BadItems("skip"))[split]) or None


class Fer2013(_ManualBuilder, skip_registration=True):
    """FER2013 (Kaggle CSV): 48x48 grayscale faces, 7 classes."""

    name = "fer2013"
    IMAGE_SHAPE = (48, 48, 1)
    SPLIT_ORDER = ("train", "valid", "test")
    DESCRIPTION = "FER2013 from Kaggle's fer2013.csv; Usage Training / PublicTest / PrivateTest = train / valid / test."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download fer2013.csv (emotion,pixels,Usage) from the Kaggle challenge "Challenges in
    Representation Learning: Facial Expression Recognition" and point data_dir at it or at the
    folder that holds it.
    """

    @classmethod
    def source_splits(cls, source_dir: str) -> list[str]:
        from amobilenet_jax.data import fer2013

        # All splits live in the one CSV; its Usage column says which are there (a full scan).
        usages = {row.usage for row in fer2013.read_rows(fer2013.csv_path(source_dir), keep_bad=True)}
        return [split for split in cls.SPLIT_ORDER if fer2013.USAGE[split] in usages]

    @classmethod
    def source_splits_if_cheap(cls, source_dir: str) -> list[str] | None:
        # Scanning the 290 MB CSV on every run would cost seconds, and a split cannot be added to
        # it without replacing the file (bump VERSION or clear the cache then).
        return None

    def _source_examples(self, source_dir: str, split: str) -> Iterator[tuple[str, np.ndarray, Any]]:
        from amobilenet_jax.data import fer2013

        return fer2013.iter_examples(source_dir, split, self.bad)


BUILDERS: dict[str, type[_ManualBuilder]] = {"ferplus": Ferplus, "rafdb": Rafdb, "fer2013": Fer2013}


def _builder(
    name: str, data_dir: str, cache_dir: str | None, on_error: str = "raise", splits: Sequence[str] | None = None
) -> _ManualBuilder:
    if name not in BUILDERS:
        raise ConfigError(f"no prepared form for data set {name!r}; choose one of {sorted(BUILDERS)}")
    if not os.path.exists(data_dir):
        raise DataNotFoundError(f"{data_dir}: {name} data directory not found")
    if cache_dir is None:
        # fer2013 also accepts the CSV file itself as data_dir: then the cache goes beside it.
        base = data_dir if os.path.isdir(data_dir) else os.path.dirname(os.path.abspath(data_dir))
        cache_dir = os.path.join(base, DEFAULT_CACHE_SUBDIR)
    return BUILDERS[name](
        data_dir=os.path.abspath(cache_dir), file_format="array_record", on_error=on_error, splits=splits
    )


def _write_json(path: str, record: dict) -> None:
    """Writes ``record`` through a temp file and a rename: readers see all of it or nothing."""
    from amobilenet_jax.files import write_atomic

    write_atomic(path, json.dumps(record, indent=1))


def read_skipped(prepared_dir: str) -> tuple[str, ...]:
    """The items a prepared copy left out (``on_error="skip"``), as ``file:row: reason`` lines.

    A copy without the record was prepared before skipping existed, so skipped nothing.
    """
    path = os.path.join(prepared_dir, SKIPPED_FILE)
    if not os.path.exists(path):
        return ()
    try:
        with open(path) as f:
            skipped = json.load(f)["skipped"]
        if not isinstance(skipped, list) or not all(isinstance(reason, str) for reason in skipped):
            raise ValueError("'skipped' is not a list of strings")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"{path}: unreadable record of skipped items ({joined(e)}); delete {prepared_dir} to prepare again"
        ) from None
    return tuple(skipped)


def _check_reusable(prepared_dir: str, on_error: str) -> None:
    """Refuses a copy that skipped items to a run that asked for none to be skipped."""
    skipped = read_skipped(prepared_dir)
    if skipped and on_error == "raise":
        more = f", with {len(skipped) - 1} more," if len(skipped) > 1 else ""
        raise DataError(
            f"{skipped[0]} (skipped{more} when {prepared_dir} was prepared with data.on_error=skip: "
            f"set data.on_error=skip to use that copy, or fix the data and delete it)"
        )


def _user_error_in(error: BaseException) -> UserError | None:
    """Our one-line error behind ``error``, when TFDS wrapped or re-raised one."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _single_line(error: UserError) -> UserError:
    """``error`` itself, or the same type with its message on one line."""
    text = str(error)
    return error if "\n" not in text else type(error)(joined(text))


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """TFDS's tqdm bars off while we prepare: they redraw one line with \\r, which a log file keeps all of."""
    from tensorflow_datasets.core.utils import tqdm_utils

    was = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(False)
    try:
        yield
    finally:
        tfds.display_progress_bar(was)


def _is_prepared(builder: _ManualBuilder) -> bool:
    # TFDS's own test in download_and_prepare: the version dir appears, by rename, only once complete.
    return (builder.data_path / "dataset_info.json").exists()


def _remove_stale_incomplete(builder: _ManualBuilder, older_than_s: float = STALE_INCOMPLETE_S) -> None:
    """Deletes ``incomplete.*`` dirs that a killed preparation (SIGKILL, power loss) left behind.

    They are never mistaken for prepared data, but would sit in the cache forever. Only dirs
    with no file touched for ``older_than_s`` go: a live preparation elsewhere keeps writing.
    """
    now = time.time()
    for path in glob.glob(os.path.join(os.fspath(builder.data_path.parent), f"incomplete.*_{builder.version}")):
        try:
            stamps = [os.path.getmtime(path)]
            stamps += [os.path.getmtime(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files]
            if now - max(stamps) > older_than_s:
                shutil.rmtree(path)
        except OSError:  # raced with its owner finishing or another cleaner: nothing to do
            continue


def prepare(
    name: str, data_dir: str, cache_dir: str | None = None, on_error: str = "raise", splits: Sequence[str] | None = None
) -> str:
    """Writes the ArrayRecord form of data set ``name`` unless it is already there.

    Args:
      name: ``"ferplus"``, ``"rafdb"`` or ``"fer2013"``.
      data_dir: the data set in its official layout (read-only is fine when ``cache_dir`` is set).
      cache_dir: where prepared data sets live; default ``<data_dir>/.tfds``.
      on_error: ``"raise"``: a bad image or row raises; ``"skip"``: it is left out and listed in
        the copy's ``skipped.json`` (see the module docstring).
      splits: prepare only these (``--mode eval`` of one split); None: every split present.

    Returns:
      The prepared directory, ``<cache_dir>/<name>/<version>``.

    Raises:
      DataError, DataNotFoundError: one line naming the file (and row); nothing is left
        prepared. Also for a copy that skipped items when ``on_error="raise"``.

    A prepared copy is reused as is (a directory listing or a small label file is read, no image),
    except when it lacks a split asked for, or (asked for every split) one that ``data_dir`` now
    holds (e.g. FER2013Test added later, or the training split after an evaluation prepared only
    the test split): then it is rebuilt with the splits it had and those. One cache_dir holds one
    copy per data set name and version, whatever its data_dir.
    """
    bad_items.check_on_error(on_error)
    builder = _builder(name, data_dir, cache_dir, on_error, splits)
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    if _is_prepared(builder):
        prepared = set(builder.info.splits.keys())
        if splits is not None:
            wanted = set(splits)
        else:
            wanted = builder.source_splits_if_cheap(data_dir)
            if wanted is None and "train" not in prepared:  # a partial copy: worth a full look
                wanted = builder.source_splits(data_dir)
        if wanted is None or set(wanted) <= prepared:
            _check_reusable(os.fspath(builder.data_path), on_error)
            return os.fspath(builder.data_path)
        logging.warning(
            "%s: %s has splits %s, prepared copy only %s: rebuilding",
            name,
            data_dir,
            sorted(wanted),
            sorted(prepared),
        )
        if splits is not None:  # keep what the copy had, where the data still has it
            present = builder.source_splits(data_dir)
            keep = tuple(s for s in builder.SPLIT_ORDER if s in (prepared & set(present)) | set(splits))
            builder = _builder(name, data_dir, cache_dir, on_error, keep)
        # TFDS deletes the old copy first, then builds in a temp dir and renames: a failure
        # leaves nothing prepared rather than a copy that silently lacks a split.
        mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
    # The folders TFDS is about to make: a failed preparation removes them again when empty.
    made = [path for path in (builder.data_path.parent.parent, builder.data_path.parent) if not path.exists()]
    try:
        _run_preparation(builder, name, data_dir, cache_dir, mode)
    except BaseException:
        for path in reversed(made):
            with contextlib.suppress(OSError):  # not empty (another process's copy) or already gone
                os.rmdir(path)
        raise
    _remove_stale_incomplete(builder)
    _check_reusable(os.fspath(builder.data_path), on_error)  # another process's copy may have won the race
    return os.fspath(builder.data_path)


def _run_preparation(
    builder: _ManualBuilder, name: str, data_dir: str, cache_dir: str | None, mode: tfds.download.GenerateMode
) -> None:
    """TFDS's download_and_prepare, with our one-line errors coming out as they went in."""
    # Nothing is downloaded; a throwaway download dir keeps TFDS's empty downloads/ out of the cache.
    with tempfile.TemporaryDirectory(prefix="amobilenet-tfds-") as download_dir, _no_progress_bars():
        try:
            builder.download_and_prepare(
                download_dir=download_dir,
                download_config=tfds.download.DownloadConfig(
                    manual_dir=os.path.abspath(data_dir),
                    download_mode=mode,
                    try_download_gcs=False,  # our own data sets: never look for a hosted copy
                ),
                # No file_format here: the builder was made with array_record, and passing it again
                # is refused when the info was read back from an existing copy (the rebuild case).
            )
        except Exception as e:
            user_error = _user_error_in(e)
            if user_error is not None:
                raise _single_line(user_error) from None
            # Another process (e.g. a second host of the same job) may have renamed its copy into
            # place first, making our final rename fail: its copy is as good as ours.
            if not isinstance(e, OSError) or not _is_prepared(_builder(name, data_dir, cache_dir)):
                raise


def _read_split(
    builder: _ManualBuilder, split: str, label_key: str, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one prepared split into ``(images uint8[N, H, W, C], labels int64[N, K])``.

    Not ``data_source[i]``: one record at a time through TFDS's generic decoder is several times
    slower (experiments/ferplus_data/README.md). Here the raw records come in batched reads
    (``__getitems__``) and, the schema being fixed, the two fields are taken straight out of the
    ``tf.train.Example`` protobuf. Chunks bound the peak memory to the output arrays plus
    ``chunk`` serialized records.
    """
    source = builder.as_data_source(split=split).data_source
    n = len(source)
    size = int(np.prod(builder.IMAGE_SHAPE))
    images = np.empty((n, *builder.IMAGE_SHAPE), dtype=np.uint8)
    pixels = memoryview(images).cast("B")
    labels: list[Sequence[int]] = []
    example = tf_example_pb2.Example()
    for start in range(0, n, chunk):
        records = source.__getitems__(list(range(start, min(n, start + chunk))))
        for i, record in enumerate(records, start):
            example.ParseFromString(record)
            feature = example.features.feature
            # Raises if the stored image has another size than the declared shape.
            pixels[i * size : (i + 1) * size] = feature["image"].bytes_list.value[0]
            labels.append(feature[label_key].int64_list.value)
    width = int(np.prod(builder.info.features[label_key].shape))  # 10 votes, or 1 for a class label
    return images, np.asarray(labels, dtype=np.int64).reshape(n, width)


def load_prepared(
    name: str,
    data_dir: str,
    label_mode: str = "majority",
    cache_dir: str | None = None,
    splits: Sequence[str] | None = None,
    on_error: str = "raise",
) -> Dataset:
    """Prepares ``name`` if needed, then reads splits (default: all prepared) into host memory.

    Given ``splits``, only those are prepared and read: a directory that holds only a test
    split evaluates a model.

    Same contents as the reader's ``load()``, row for row: for FERPlus ``label_mode`` applies to
    train while valid/test always get majority labels (what evaluation uses); ``label_mode`` is
    ignored for the other data sets, which have one label per image. ``on_error`` as in
    ``prepare``; what the prepared copy skipped is printed and returned in ``Dataset.skipped``
    (all of it, whichever ``splits`` are read).
    """
    if name not in BUILDERS:
        raise ConfigError(f"no prepared form for data set {name!r}; choose one of {sorted(BUILDERS)}")
    reader = BUILDERS[name].reader()
    if name == "ferplus" and label_mode not in reader.LABEL_MODES:
        raise ConfigError(f"label_mode must be one of {list(reader.LABEL_MODES)}, got {label_mode!r}")
    bad_items.check_on_error(on_error)
    builder = _builder(name, data_dir, cache_dir, on_error)
    if splits is not None and not _is_prepared(builder):
        # Before preparing: a split that is not there should not cost a preparation of the others.
        _check_splits(name, data_dir, splits, builder.source_splits(data_dir), "present")
    prepared_dir = prepare(name, data_dir, cache_dir, on_error, splits)
    builder = _builder(name, data_dir, cache_dir, on_error)
    available = [split for split in builder.SPLIT_ORDER if split in builder.info.splits]
    wanted = available if splits is None else list(splits)
    _check_splits(name, data_dir, wanted, available, "prepared")
    out: dict[str, Split] = {}
    for split in wanted:
        images, labels = _read_split(builder, split, builder.LABEL_KEY)
        if name == "ferplus":
            keep, hard, targets = reader.votes_to_labels(labels, label_mode if split == "train" else "majority")
            out[split] = Split(images[keep], hard[keep], None if targets is None else targets[keep])
        else:
            out[split] = Split(images, labels[:, 0].astype(np.int32))
    skipped = read_skipped(prepared_dir)
    bad_items.report(name, skipped)
    return Dataset(name, tuple(reader.CLASS_NAMES), out, skipped=skipped, source=data_dir)


def split_names(name: str, data_dir: str) -> list[str]:
    """The splits present in ``data_dir``'s official layout, without preparing anything."""
    if name not in BUILDERS:
        raise ConfigError(f"no prepared form for data set {name!r}; choose one of {sorted(BUILDERS)}")
    if not os.path.exists(data_dir):
        raise DataNotFoundError(f"{data_dir}: {name} data directory not found")
    return BUILDERS[name].source_splits(data_dir)


def _check_splits(name: str, data_dir: str, wanted: Sequence[str], available: Sequence[str], how: str) -> None:
    for split in wanted:
        if split not in available:
            raise DataNotFoundError(f"{data_dir}: {name} has no split {split!r}; {how}: {list(available)}")


def class_abbreviations(name: str) -> tuple[str, ...]:
    """Short class names for tables and JSON keys: the reader's ``CLASS_ABBREVIATIONS``."""
    if name not in BUILDERS:
        raise ConfigError(f"no prepared form for data set {name!r}; choose one of {sorted(BUILDERS)}")
    return tuple(BUILDERS[name].reader().CLASS_ABBREVIATIONS)
