"""Bad input, a corpus: each broken data set gives one clear line and leaves no prepared data.

Every case is a tiny fixture tree (tests/fixtures.py) with one thing broken. Read three ways
(the reader's ``load``, ``tfds_builders.prepare`` / ``load_prepared``, and ``data.load_dataset``)
it must raise ``DataError`` / ``DataNotFoundError`` with a one-line message naming the file (and
``file:row``), and leave ``cache_dir`` empty: no copy, no ``incomplete.*`` dir, no empty folder.
With ``data.on_error="skip"`` a bad image or row is left out, printed and listed in
``Dataset.skipped``, also by a later load of the prepared copy; a run with ``"raise"`` refuses
that copy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable

import ml_collections
import numpy as np
import pytest
from PIL import Image

from amobilenet_jax.data import fer2013, ferplus, load_dataset, rafdb, tfds_builders
from amobilenet_jax.errors import DataError, DataNotFoundError
from tests import fixtures
from tests.test_tfds_builders import assert_same_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READERS = {"ferplus": ferplus.load, "rafdb": rafdb.load, "fer2013": fer2013.load}


@dataclasses.dataclass(frozen=True)
class Case:
    """A broken data set and what its error must say."""

    name: str  # data set
    data_dir: str
    error: type[Exception]  # DataError or DataNotFoundError, exactly
    file: str  # the message names this file...
    row: int | None = None  # ...at this 1-based row (``file:row:``), when there is one
    item: bool = True  # one bad image or row (skippable), not a problem of the whole data set
    splits: tuple[str, ...] | None = None  # splits asked for (None: all)


def replace_line(path: str, line: int, edit: Callable[[str], str]) -> None:
    with open(path) as f:
        lines = f.read().split("\n")
    lines[line - 1] = edit(lines[line - 1])
    with open(path, "w") as f:
        f.write("\n".join(lines))


def replace_field(index: int, value: str) -> Callable[[str], str]:
    """An edit of one comma-separated field (rows here have no quoted commas after field 1)."""

    def edit(text: str) -> str:
        head, box, tail = text.partition('"(0, 0, 48, 48)"')  # label.csv's face box holds commas
        fields = tail.split(",")[1:] if box else text.split(",")
        fields[index] = value
        return f"{head}{box}," + ",".join(fields) if box else ",".join(fields)

    return edit


def ferplus_folders(root: str) -> tuple[str, str, int]:
    """A tiny FERPlus folder tree -> (valid label.csv, valid image path, its row); the rule keeps that image."""
    valid = fixtures.write_ferplus_folders(root, sizes={"train": 8, "valid": 8})["splits"]["valid"]
    i = int(np.flatnonzero(valid["majority"] >= 0)[0])  # decoded by every reader, not dropped by the label rule
    return os.path.join(valid["dir"], "label.csv"), os.path.join(valid["dir"], valid["names"][i]), i + 1


def truncated_png(root: str) -> Case:
    label_csv, png, row = ferplus_folders(root)
    with open(png, "rb") as f:
        data = f.read()
    with open(png, "wb") as f:
        f.write(data[: len(data) // 2])
    return Case("ferplus", root, DataError, label_csv, row)


def wrong_size_png(root: str) -> Case:
    label_csv, png, row = ferplus_folders(root)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(png)
    return Case("ferplus", root, DataError, label_csv, row)


def not_an_image(root: str) -> Case:
    label_csv, png, row = ferplus_folders(root)
    with open(png, "w") as f:
        f.write("neutral,happiness\n")
    return Case("ferplus", root, DataError, label_csv, row)


def empty_label_csv(root: str) -> Case:
    label_csv, _, _ = ferplus_folders(root)
    open(label_csv, "w").close()
    return Case("ferplus", root, DataError, label_csv, item=False)


def too_few_columns(root: str) -> Case:
    label_csv, _, row = ferplus_folders(root)
    replace_line(label_csv, row, lambda text: text.rsplit(",", 1)[0])
    return Case("ferplus", root, DataError, label_csv, row)


def negative_vote(root: str) -> Case:
    label_csv, _, row = ferplus_folders(root)
    replace_line(label_csv, row, replace_field(3, "-2"))
    return Case("ferplus", root, DataError, label_csv, row)


def non_numeric_vote(root: str) -> Case:
    label_csv, _, row = ferplus_folders(root)
    replace_line(label_csv, row, replace_field(0, "six"))
    return Case("ferplus", root, DataError, label_csv, row)


def missing_image(root: str) -> Case:
    label_csv, png, row = ferplus_folders(root)
    os.remove(png)
    return Case("ferplus", root, DataNotFoundError, label_csv, row)


def rafdb_unknown_label(root: str) -> Case:
    partition = fixtures.write_rafdb(root, sizes={"train": 7, "test": 7})["partition"]
    replace_line(partition, 2, lambda text: text.split()[0] + " 8")
    return Case("rafdb", root, DataError, partition, 2)


def kaggle_bad_pixels(root: str) -> Case:
    written = fixtures.write_ferplus_kaggle(root, sizes={"train": 8, "valid": 4})
    train = written["splits"]["train"]
    name = train["names"][int(np.flatnonzero(train["majority"] >= 0)[0])]
    line = int(name[len("fer") : -len(".png")]) + 2  # fer<row index>.png; line 1 is the header
    replace_line(written["fer2013_csv"], line, lambda text: text.replace(",", ",x ", 1))
    return Case("ferplus", root, DataError, written["fer2013_csv"], line)


def fer2013_bad_pixels(root: str) -> Case:
    csv_path = fixtures.write_fer2013(root, sizes={"train": 7, "valid": 7})["csv"]
    replace_line(csv_path, 4, lambda text: text.replace(" ", " x", 1))  # pixel 1 is not an integer
    return Case("fer2013", root, DataError, csv_path, 4)


def missing_data_dir(root: str) -> Case:
    absent = os.path.join(root, "absent")
    return Case("ferplus", absent, DataNotFoundError, absent, item=False)


def missing_split(root: str) -> Case:
    ferplus_folders(root)
    return Case("ferplus", root, DataNotFoundError, root, item=False, splits=("test",))


CASES = {
    "truncated_png": truncated_png,
    "wrong_size_png": wrong_size_png,
    "not_an_image": not_an_image,
    "empty_label_csv": empty_label_csv,
    "too_few_columns": too_few_columns,
    "negative_vote": negative_vote,
    "non_numeric_vote": non_numeric_vote,
    "missing_image": missing_image,
    "rafdb_unknown_label": rafdb_unknown_label,
    "kaggle_bad_pixels": kaggle_bad_pixels,
    "fer2013_bad_pixels": fer2013_bad_pixels,
    "missing_data_dir": missing_data_dir,
    "missing_split": missing_split,
}
ITEM_CASES = [name for name in CASES if name not in ("empty_label_csv", "missing_data_dir", "missing_split")]


def data_config(case: Case, cache_dir: str, on_error: str) -> ml_collections.ConfigDict:
    """The ``config.data`` fields ``load_dataset`` reads."""
    return ml_collections.ConfigDict(
        {
            "name": case.name,
            "dir": case.data_dir,
            "cache_dir": cache_dir,
            "label_mode": "majority",
            "on_error": on_error,
        }
    )


def load(how: str, case: Case, cache_dir: str, on_error: str = "raise"):
    splits = None if case.splits is None else list(case.splits)
    if how == "reader":
        return READERS[case.name](case.data_dir, splits=splits, on_error=on_error)
    if how == "prepare" and splits is None:
        return tfds_builders.prepare(case.name, case.data_dir, cache_dir, on_error=on_error)
    if how == "prepare":  # prepare() takes no splits: the loader asking for one is the case
        return tfds_builders.load_prepared(
            case.name, case.data_dir, cache_dir=cache_dir, splits=splits, on_error=on_error
        )
    assert splits is None, "load_dataset loads every split"
    return load_dataset(data_config(case, cache_dir, on_error))


def cache_contents(cache_dir: str) -> list[str]:
    return sorted(os.path.join(root, x) for root, dirs, files in os.walk(cache_dir) for x in dirs + files)


def assert_one_line_naming(error: BaseException, case: Case) -> None:
    assert type(error) is case.error, repr(error)
    message = str(error)
    assert "\n" not in message and message.strip() == message
    assert case.file in message
    if case.row is not None:
        assert f"{case.file}:{case.row}:" in message


@pytest.mark.parametrize(
    "case_name, how",
    [
        (c, how)
        for c in CASES
        for how in ("reader", "prepare", "load_dataset")
        if (c, how) != ("missing_split", "load_dataset")
    ],
)
def test_bad_input_raises_one_line_and_prepares_nothing(case_name: str, how: str, tmp_path) -> None:
    case = CASES[case_name](str(tmp_path / "data"))
    cache_dir = str(tmp_path / "cache")
    with pytest.raises((DataError, DataNotFoundError)) as info:
        load(how, case, cache_dir)
    assert_one_line_naming(info.value, case)
    assert cache_contents(cache_dir) == []  # no copy, no incomplete.* dir, no empty folder
    if os.path.isdir(case.data_dir):
        assert ".tfds" not in os.listdir(case.data_dir)


@pytest.mark.parametrize("case_name", ["empty_label_csv", "missing_data_dir", "missing_split"])
def test_whole_data_set_problems_raise_when_skipping_too(case_name: str, tmp_path) -> None:
    case = CASES[case_name](str(tmp_path / "data"))
    cache_dir = str(tmp_path / "cache")
    for how in ("reader", "prepare"):
        with pytest.raises((DataError, DataNotFoundError)) as info:
            load(how, case, cache_dir, on_error="skip")
        assert_one_line_naming(info.value, case)
    assert cache_contents(cache_dir) == []


def test_our_error_comes_out_of_tfds_unwrapped_and_on_one_line(tmp_path, monkeypatch) -> None:
    # TFDS re-raises some errors as RuntimeError("Failed to encode example:\n...") from the original.
    def wrapped(self, source_dir, split):
        try:
            raise DataError("/data/label.csv:3: bad row\nsecond line")
        except DataError as e:
            raise RuntimeError("Failed to encode example:\n{'image': ...}") from e

    root, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    fixtures.write_ferplus_folders(root, sizes={"train": 2})
    monkeypatch.setattr(tfds_builders.Ferplus, "_source_examples", wrapped)
    with pytest.raises(DataError) as info:
        tfds_builders.prepare("ferplus", root, cache_dir)
    assert str(info.value) == "/data/label.csv:3: bad row second line"
    assert cache_contents(cache_dir) == []


def test_failure_with_the_default_cache_dir_leaves_no_tfds_folder(tmp_path) -> None:
    case = truncated_png(str(tmp_path))
    with pytest.raises(DataError):
        tfds_builders.prepare("ferplus", case.data_dir)
    assert ".tfds" not in os.listdir(case.data_dir)


@pytest.mark.parametrize("case_name", ITEM_CASES)
def test_skip_leaves_out_lists_and_remembers_bad_items(case_name: str, tmp_path, capsys, monkeypatch) -> None:
    case = CASES[case_name](str(tmp_path / "data"))
    cache_dir = str(tmp_path / "cache")
    where = f"{case.file}:{case.row}:"

    direct = load("reader", case, cache_dir, on_error="skip")
    assert len(direct.skipped) == 1 and direct.skipped[0].startswith(where)
    out = capsys.readouterr().out
    assert f"{case.name}: skipped 1 bad item (data.on_error=skip):" in out and direct.skipped[0] in out

    prepared = load("load_dataset", case, cache_dir, on_error="skip")
    assert prepared.skipped == direct.skipped
    assert_same_dataset(prepared, direct)
    out = capsys.readouterr().out
    assert re.search(rf"^preparing {case.name} train: \d+(/\d+)? images, \d+ s(, \d+ skipped)?, done$", out, re.M)
    assert out.count(direct.skipped[0]) == 1  # reported once per load

    # A later run reads the prepared copy (nothing is generated again) and reports the same skips.
    def no_rebuild(*args, **kwargs):
        raise AssertionError("prepared data was rebuilt")

    monkeypatch.setattr(tfds_builders._ManualBuilder, "_generate_examples", no_rebuild)
    again = load("load_dataset", case, cache_dir, on_error="skip")
    assert again.skipped == direct.skipped
    assert_same_dataset(again, direct)
    assert direct.skipped[0] in capsys.readouterr().out

    # A run that skips nothing refuses the copy, naming the first item it lacks; the copy stays.
    with pytest.raises(DataError) as info:
        load("load_dataset", case, cache_dir, on_error="raise")
    assert str(info.value).startswith(where) and "data.on_error=skip" in str(info.value)
    assert "\n" not in str(info.value)
    assert os.path.isfile(os.path.join(cache_dir, case.name, tfds_builders.VERSION, tfds_builders.SKIPPED_FILE))


def test_skip_report_lists_the_first_five(tmp_path, capsys) -> None:
    root = str(tmp_path / "data")
    valid = fixtures.write_ferplus_folders(root, sizes={"train": 8, "valid": 8})["splits"]["valid"]
    for name in valid["names"][:7]:
        with open(os.path.join(valid["dir"], name), "w") as f:
            f.write("not a png")
    label_csv = os.path.join(valid["dir"], "label.csv")
    dataset = tfds_builders.load_prepared("ferplus", root, cache_dir=str(tmp_path / "cache"), on_error="skip")
    assert [reason.split(": ")[0] for reason in dataset.skipped] == [f"{label_csv}:{row}" for row in range(1, 8)]
    assert len(dataset.splits["valid"]) == int(valid["majority"][7] >= 0)
    out = capsys.readouterr().out.splitlines()
    header = out.index("ferplus: skipped 7 bad items (data.on_error=skip), the first 5:")
    assert out[header + 1 : header + 6] == [f"  {reason}" for reason in dataset.skipped[:5]]
    assert len(out) == header + 6 or not out[header + 6].startswith("  ")


def test_clean_copy_serves_both_modes(tmp_path, capsys) -> None:
    root, cache_dir = str(tmp_path / "data"), str(tmp_path / "cache")
    fixtures.write_ferplus_folders(root, sizes={"train": 8, "valid": 8})
    raised = tfds_builders.load_prepared("ferplus", root, cache_dir=cache_dir, on_error="raise")
    skipped = tfds_builders.load_prepared("ferplus", root, cache_dir=cache_dir, on_error="skip")
    assert raised.skipped == skipped.skipped == ()
    assert_same_dataset(skipped, raised)
    assert "skipped" not in capsys.readouterr().out


def test_progress_lines(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(tfds_builders, "PROGRESS_INTERVAL_S", 0.0)  # a line per image
    root = str(tmp_path / "data")
    fixtures.write_ferplus_folders(root, sizes={"train": 3, "valid": 2})
    tfds_builders.prepare("ferplus", root, str(tmp_path / "cache"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("preparing ferplus train:")]
    assert [re.sub(r"\d+ s", "T s", line) for line in lines] == [
        "preparing ferplus train: 1/3 images, T s",
        "preparing ferplus train: 2/3 images, T s",
        "preparing ferplus train: 3/3 images, T s",
        "preparing ferplus train: 3/3 images, T s, done",
    ]


def test_missing_split_of_a_loaded_data_set_names_the_data_dir(tmp_path) -> None:
    case = missing_split(str(tmp_path / "data"))
    dataset = load_dataset(data_config(case, str(tmp_path / "cache"), "raise"))
    with pytest.raises(DataNotFoundError, match=re.escape(f"{case.data_dir}: ") + ".*no split 'test'") as info:
        dataset.split("test")
    assert "\n" not in str(info.value)


def test_cli_prints_one_line_error_and_skips_with_on_error_skip(tmp_path) -> None:
    case = truncated_png(str(tmp_path / "data"))
    cache_dir = str(tmp_path / "cache")

    def run(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "amobilenet_jax.data", "--dataset", "ferplus", "--data_dir", case.data_dir]
        command += ["--cache_dir", cache_dir, *extra]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    result = run()
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"error: {case.file}:{case.row}: cannot decode image")
    assert cache_contents(cache_dir) == []

    result = run("--on_error", "skip")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ferplus: skipped 1 bad item (data.on_error=skip):" in result.stdout
    assert f"  {case.file}:{case.row}: cannot decode image" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1]).keys() == {"train", "valid"}
