"""Tests for "prepare once, load fast" (amobilenet_jax.data.tfds_builders and the CLI).

Every fixture layout: the prepared copy loads back byte-equal to the reader's direct
``load()``, a second ``prepare`` reuses it untouched, the CLI's last line counts it, a reader
failing midway leaves nothing behind, and none of it imports TensorFlow. The real FERPlus
Valid split is prepared through a symlinked data dir (Train too with AMOBILENET_SLOW_TESTS=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from amobilenet_jax.data import Dataset, fer2013, ferplus, rafdb, tfds_builders
from amobilenet_jax.errors import DataNotFoundError
from tests import fixtures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_FERPLUS = os.path.join(REPO, "..", "shared", "data", "ferplus")
REAL_VALID_COUNTS = [1180, 862, 411, 348, 289, 25, 60, 16]
REAL_TRAIN_COUNTS = [8733, 7284, 3136, 3022, 2098, 116, 536, 120]
SLOW = os.environ.get("AMOBILENET_SLOW_TESTS") == "1"


def assert_same_dataset(got: Dataset, want: Dataset) -> None:
    """Same name, classes, split order and byte-equal arrays (dtype and shape included)."""
    assert (got.name, got.class_names) == (want.name, want.class_names)
    assert list(got.splits) == list(want.splits)
    for split in want.splits:
        for field in ("images", "labels", "targets"):
            a, b = getattr(got.splits[split], field), getattr(want.splits[split], field)
            if b is None:
                assert a is None, (split, field)
                continue
            assert (a.dtype, a.shape) == (b.dtype, b.shape), (split, field)
            assert a.tobytes() == b.tobytes(), (split, field)


def file_stamps(directory: str) -> dict[str, int]:
    """mtime (ns) of every file and folder under ``directory``: what a rebuild would change."""
    stamps = {directory: os.stat(directory).st_mtime_ns}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            stamps[path] = os.stat(path).st_mtime_ns
    return stamps


def run_cli(*args: str) -> dict:
    """Runs ``python -m amobilenet_jax.data`` and returns its last stdout line, parsed."""
    result = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.data", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def expected_counts(dataset: Dataset, abbreviations: tuple[str, ...]) -> dict:
    return {
        split: dict(zip(abbreviations, np.bincount(s.labels, minlength=len(abbreviations)).tolist()))
        for split, s in dataset.splits.items()
    }


# One entry per official layout: (writer, builder name, reader's slow-path load).
LAYOUTS = {
    "ferplus_folders": (fixtures.write_ferplus_folders, "ferplus", ferplus.load),
    "ferplus_kaggle": (fixtures.write_ferplus_kaggle, "ferplus", ferplus.load),
    "rafdb": (fixtures.write_rafdb, "rafdb", lambda d, **kw: rafdb.load(d)),
    "fer2013": (fixtures.write_fer2013, "fer2013", lambda d, **kw: fer2013.load(d)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_prepare_then_load_equals_reader_and_is_reused(layout: str, tmp_path, monkeypatch) -> None:
    write, name, load = LAYOUTS[layout]
    data_dir, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    write(data_dir)

    prepared = tfds_builders.prepare(name, data_dir, cache_dir=cache_dir)
    assert prepared == os.path.join(cache_dir, name, tfds_builders.VERSION)
    assert any(f.endswith(".array_record-00000-of-00001") for f in os.listdir(prepared))
    assert sorted(os.listdir(cache_dir)) == [name]  # no leftover downloads/ or incomplete.* dir

    modes = ferplus.LABEL_MODES if name == "ferplus" else ("majority",)
    for mode in modes:
        assert_same_dataset(
            tfds_builders.load_prepared(name, data_dir, label_mode=mode, cache_dir=cache_dir),
            load(data_dir, label_mode=mode),
        )

    # Reused untouched: same files and mtimes, and no example is generated again.
    before = file_stamps(os.path.join(cache_dir, name))

    def no_rebuild(*args, **kwargs):
        raise AssertionError("prepared data was rebuilt")

    monkeypatch.setattr(tfds_builders._ManualBuilder, "_generate_examples", no_rebuild)
    assert tfds_builders.prepare(name, data_dir, cache_dir=cache_dir) == prepared
    one = tfds_builders.load_prepared(name, data_dir, cache_dir=cache_dir, splits=["train"])
    assert list(one.splits) == ["train"]
    assert file_stamps(os.path.join(cache_dir, name)) == before


def test_default_cache_dir_is_inside_data_dir(tmp_path) -> None:
    data_dir = str(tmp_path / "rafdb")
    fixtures.write_rafdb(data_dir, sizes={"train": 7, "test": 7})
    prepared = tfds_builders.prepare("rafdb", data_dir)
    assert prepared == os.path.join(data_dir, ".tfds", "rafdb", tfds_builders.VERSION)


def test_missing_image_leaves_no_partial_output(tmp_path) -> None:
    data_dir, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    written = fixtures.write_ferplus_folders(data_dir, sizes={"train": 24, "valid": 8})
    # An image in the middle of the second split: train is fully written by then.
    missing = os.path.join(written["splits"]["valid"]["dir"], written["splits"]["valid"]["names"][4])
    os.rename(missing, missing + ".away")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        tfds_builders.prepare("ferplus", data_dir, cache_dir=cache_dir)
    leftovers = [os.path.join(root, f) for root, _, files in os.walk(cache_dir) for f in files]
    assert leftovers == []
    assert not os.path.exists(os.path.join(cache_dir, "ferplus", tfds_builders.VERSION))
    # Fixed data then prepares normally.
    os.rename(missing + ".away", missing)
    assert_same_dataset(tfds_builders.load_prepared("ferplus", data_dir, cache_dir=cache_dir), ferplus.load(data_dir))


def test_killed_preparation_is_swept_up_once_stale(tmp_path) -> None:
    # What a SIGKILLed preparation leaves (TFDS's temp dir); a fresh one may be a live preparation.
    data_dir, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    fixtures.write_ferplus_folders(data_dir, sizes={"train": 8, "valid": 8})
    dead, live = (os.path.join(cache_dir, "ferplus", f"incomplete.{tag}_{tfds_builders.VERSION}") for tag in "AB")
    for path in (dead, live):
        os.makedirs(path)
        with open(os.path.join(path, "ferplus-train.array_record-00000-of-00001"), "wb") as f:
            f.write(b"partial")
    old = time.time() - 2 * tfds_builders.STALE_INCOMPLETE_S
    for path in (dead, os.path.join(dead, "ferplus-train.array_record-00000-of-00001")):
        os.utime(path, (old, old))
    tfds_builders.prepare("ferplus", data_dir, cache_dir=cache_dir)
    assert sorted(os.listdir(os.path.join(cache_dir, "ferplus"))) == sorted(
        [tfds_builders.VERSION, os.path.basename(live)]
    )


def test_split_added_later_rebuilds(tmp_path) -> None:
    data_dir, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    fixtures.write_ferplus_folders(data_dir, sizes={"train": 16, "valid": 8})
    tfds_builders.prepare("ferplus", data_dir, cache_dir=cache_dir)
    # Adding FER2013Test later: the prepared copy lacks it, so it is rebuilt with all three.
    fixtures.write_ferplus_folders(str(tmp_path / "more"), sizes={"test": 8}, seed=1)
    os.rename(str(tmp_path / "more" / "FER2013Test"), os.path.join(data_dir, "FER2013Test"))
    dataset = tfds_builders.load_prepared("ferplus", data_dir, cache_dir=cache_dir)
    assert list(dataset.splits) == ["train", "valid", "test"]
    assert_same_dataset(dataset, ferplus.load(data_dir))


def test_unknown_split_and_label_mode_are_errors(tmp_path) -> None:
    data_dir, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    fixtures.write_ferplus_folders(data_dir, sizes={"train": 8, "valid": 8})
    with pytest.raises(ValueError, match="label_mode"):
        tfds_builders.load_prepared("ferplus", data_dir, label_mode="soft", cache_dir=cache_dir)
    with pytest.raises(DataNotFoundError, match="no split 'test'"):
        tfds_builders.load_prepared("ferplus", data_dir, cache_dir=cache_dir, splits=["test"])
    with pytest.raises(ValueError, match="no prepared form"):
        tfds_builders.prepare("affectnet", data_dir, cache_dir=cache_dir)


@pytest.mark.parametrize(
    "layout, extra",
    [("ferplus_folders", ["--label_mode", "distribution"]), ("rafdb", []), ("fer2013", [])],
)
def test_cli_last_line_counts(layout: str, extra: list[str], tmp_path) -> None:
    write, name, load = LAYOUTS[layout]
    data_dir = str(tmp_path / "data")
    write(data_dir)
    counts = run_cli("--dataset", name, "--data_dir", data_dir, "--cache_dir", str(tmp_path / "cache"), *extra)
    mode = extra[-1] if extra else "majority"
    reader = tfds_builders.BUILDERS[name].reader()
    assert counts == expected_counts(load(data_dir, label_mode=mode), tuple(reader.CLASS_ABBREVIATIONS))


def test_no_tensorflow_imported(tmp_path) -> None:
    """Prepares and loads in a fresh interpreter, which must not import TensorFlow.

    The project's venv has no TensorFlow at all (then this is what makes it work); where one is
    installed, this still checks that the path never touches it. (Poisoning
    ``sys.modules["tensorflow"]`` is no stand-in for absence: TFDS's import-time probes raise on it.)
    """
    data_dir = str(tmp_path / "data")
    fixtures.write_ferplus_folders(data_dir, sizes={"train": 8, "valid": 8})
    code = (
        "import sys\n"
        "from amobilenet_jax.data import tfds_builders\n"
        f"d = tfds_builders.load_prepared('ferplus', {data_dir!r}, cache_dir={str(tmp_path / 'cache')!r})\n"
        "assert len(d.splits['valid']) > 0\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(not os.path.isdir(os.path.join(REAL_FERPLUS, "FER2013Valid")), reason="real FERPlus absent")
def test_real_ferplus_valid(tmp_path) -> None:
    # A data dir holding only a link to the real Valid folder: prepares Valid alone (~2 s), and
    # nothing is written next to the shared data.
    data_dir = tmp_path / "ferplus"
    data_dir.mkdir()
    os.symlink(os.path.abspath(os.path.join(REAL_FERPLUS, "FER2013Valid")), data_dir / "FER2013Valid")
    dataset = tfds_builders.load_prepared("ferplus", str(data_dir), cache_dir=str(tmp_path / "cache"))
    assert list(dataset.splits) == ["valid"]
    assert np.bincount(dataset.splits["valid"].labels, minlength=8).tolist() == REAL_VALID_COUNTS


@pytest.mark.skipif(not SLOW, reason="set AMOBILENET_SLOW_TESTS=1 (prepares all of real FERPlus, ~10 s)")
@pytest.mark.skipif(not os.path.isdir(os.path.join(REAL_FERPLUS, "FER2013Train")), reason="real FERPlus absent")
def test_real_ferplus_train_and_valid(tmp_path) -> None:
    cache_dir = str(tmp_path / "cache")
    dataset = tfds_builders.load_prepared("ferplus", REAL_FERPLUS, cache_dir=cache_dir)
    assert np.bincount(dataset.splits["train"].labels, minlength=8).tolist() == REAL_TRAIN_COUNTS
    assert np.bincount(dataset.splits["valid"].labels, minlength=8).tolist() == REAL_VALID_COUNTS
    assert_same_dataset(dataset, ferplus.load(REAL_FERPLUS))
