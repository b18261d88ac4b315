"""Tests for the FERPlus, RAF-DB and FER2013 readers: fixture trees in the official
layouts, the FER+ label rules on hand-written votes, one-line errors that name file and
line, and the real FERPlus data where it is present."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image

from amobilenet_jax.data import fer2013, ferplus, rafdb
from amobilenet_jax.errors import DataNotFoundError
from tests import fixtures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_FERPLUS = os.path.join(REPO, "..", "shared", "data", "ferplus")
REAL_COUNTS = {
    "train": ([8733, 7284, 3136, 3022, 2098, 116, 536, 120], 3513),
    "valid": ([1180, 862, 411, 348, 289, 25, 60, 16], 388),
}
JPEG_TOLERANCE = 4.0  # mean |difference| in gray levels a quality-95 JPEG may add to a noisy image


def where(path: str, line: int) -> str:
    """Regex for the ``file:line:`` prefix every reader error starts with."""
    return "^" + re.escape(f"{path}:{line}:")


# ---------------------------------------------------------------------------- label rules


def test_votes_categories_match_fixture_designs() -> None:
    for kind in fixtures.VOTE_KINDS:
        for e, f in [(0, 1), (7, 2), (3, 0)]:
            votes, majority, distribution, probs = fixtures.vote_row(kind, e, f)
            keep, labels, _ = ferplus.votes_to_labels(votes[None], "majority")
            assert (bool(keep[0]), int(labels[0])) == (majority >= 0, majority), (kind, e, f)
            keep, labels, targets = ferplus.votes_to_labels(votes[None], "distribution")
            assert (bool(keep[0]), int(labels[0])) == (distribution >= 0, distribution), (kind, e, f)
            expected = np.zeros(8, np.float32)
            for column, p in probs.items():
                expected[column] = p
            np.testing.assert_allclose(targets[0], expected, atol=1e-6)


def test_majority_rule_on_hand_written_rows() -> None:
    votes = np.array(
        [
            # NE HA SU SA AN DI FE CO unk NF
            [6, 4, 0, 0, 0, 0, 0, 0, 0, 0],  # 6 of 10: neutral
            [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # tie: dropped
            [5, 4, 0, 0, 0, 0, 0, 0, 1, 0],  # the lone unknown goes: 5 of 9 -> neutral
            [0, 5, 1, 1, 1, 1, 1, 0, 0, 0],  # lone votes go: 5 of 5 -> happiness (5 of 10 before)
            [0, 0, 3, 0, 0, 0, 0, 0, 7, 0],  # unknown majority: dropped
            [0, 0, 0, 0, 2, 0, 0, 0, 0, 8],  # NF majority: dropped
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # nothing left after lone votes: dropped
            [0, 0, 0, 0, 0, 0, 0, 6, 2, 2],  # contempt, 6 of 10
            [0, 0, 0, 4, 0, 0, 0, 0, 0, 3],  # sadness 4 of 7
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # no votes at all: dropped
        ]
    )
    keep, labels, targets = ferplus.votes_to_labels(votes, "majority")
    assert targets is None
    assert keep.tolist() == [True, False, True, True, False, False, False, True, True, False]
    assert labels.dtype == np.int32
    assert labels.tolist() == [0, -1, 0, 1, -1, -1, -1, 7, 3, -1]


def test_distribution_rule_on_hand_written_rows() -> None:
    votes = np.array(
        [
            # NE HA SU SA AN DI FE CO unk NF
            [6, 4, 0, 0, 0, 0, 0, 0, 0, 0],  # 0.6 / 0.4
            [0, 4, 4, 0, 0, 0, 0, 0, 2, 0],  # emotions 8 of 10; tie -> first column (happiness)
            [3, 3, 0, 0, 0, 0, 0, 0, 4, 0],  # unknown is the argmax: dropped
            [3, 0, 0, 0, 0, 0, 0, 0, 3, 3],  # emotions 3 of 9 (not more than half): dropped
            [0, 0, 0, 2, 2, 1, 0, 0, 3, 0],  # lone disgust goes; unknown 3 is the argmax: dropped
            [0, 0, 0, 0, 0, 4, 0, 2, 4, 0],  # emotions 6 of 10; disgust ties unknown: the emotion wins
            [2, 2, 2, 2, 0, 0, 0, 0, 1, 1],  # lone votes go: a four-way split of 8
        ]
    )
    keep, labels, targets = ferplus.votes_to_labels(votes, "distribution")
    assert keep.tolist() == [True, True, False, False, False, True, True]
    assert labels.tolist() == [0, 1, -1, -1, -1, 5, 0]
    assert targets.dtype == np.float32 and targets.shape == (7, 8)
    np.testing.assert_allclose(targets[0], [0.6, 0.4, 0, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(targets[1], [0, 0.5, 0.5, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(targets[5], [0, 0, 0, 0, 0, 2 / 3, 0, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(targets[6], [0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0], atol=1e-6)
    assert not targets[~keep].any()


def test_votes_to_labels_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="label_mode"):
        ferplus.votes_to_labels(np.zeros((1, 10)), "soft")
    with pytest.raises(ValueError, match=r"shape \[N, 10\]"):
        ferplus.votes_to_labels(np.zeros((2, 8)), "majority")
    with pytest.raises(ValueError, match="non-negative"):
        ferplus.votes_to_labels(-np.ones((1, 10)), "majority")


# ---------------------------------------------------------------------------- FERPlus folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    root = str(tmp_path_factory.mktemp("ferplus_folders"))
    return fixtures.write_ferplus_folders(root)


def check_ferplus_split(split: object, expected: dict, mode: str) -> None:
    """Loaded split == the fixture's rows that ``mode`` keeps, in order, images exact."""
    labels = expected[mode]
    kept = labels >= 0
    assert split.images.dtype == np.uint8 and split.images.shape == (kept.sum(), 48, 48, 1)
    assert split.labels.dtype == np.int32
    np.testing.assert_array_equal(split.labels, labels[kept])
    np.testing.assert_array_equal(split.images, expected["images"][kept])
    np.testing.assert_array_equal(np.bincount(split.labels, minlength=8), np.bincount(labels[kept], minlength=8))
    # The mean-intensity signal points back at the written rows: image and label stay aligned.
    n = len(labels)
    assert [fixtures.signal_index(image, n) for image in split.images] == np.flatnonzero(kept).tolist()
    if mode == "majority":
        assert split.targets is None
    else:
        assert split.targets.dtype == np.float32
        np.testing.assert_allclose(split.targets, expected["targets"][kept], atol=1e-6)
        np.testing.assert_array_equal(split.targets.argmax(1), split.labels)


def test_fixture_covers_every_vote_kind(folders) -> None:
    for split in ("train", "valid", "test"):
        assert set(folders["splits"][split]["kinds"]) == set(fixtures.VOTE_KINDS)


def test_ferplus_folders_majority(folders) -> None:
    root = folders["root"]
    assert ferplus.detect_layout(root) == "folders"
    assert ferplus.split_names(root) == ["train", "valid", "test"]
    dataset = ferplus.load(root)
    assert dataset.name == "ferplus" and dataset.class_names == ferplus.CLASS_NAMES
    assert list(dataset.splits) == ["train", "valid", "test"]
    for split in ("train", "valid", "test"):
        check_ferplus_split(dataset.split(split), folders["splits"][split], "majority")


def test_ferplus_folders_distribution_only_for_train(folders) -> None:
    dataset = ferplus.load(folders["root"], "distribution", splits=["train", "test"])
    assert list(dataset.splits) == ["train", "test"]
    check_ferplus_split(dataset.split("train"), folders["splits"]["train"], "distribution")
    check_ferplus_split(dataset.split("test"), folders["splits"]["test"], "majority")


def test_ferplus_read_folder_split_and_iter(folders) -> None:
    expected = folders["splits"]["valid"]
    split = ferplus.read_folder_split(expected["dir"], "distribution")
    check_ferplus_split(split, expected, "distribution")
    names, votes, _ = ferplus.read_label_csv(os.path.join(expected["dir"], "label.csv"))
    assert names == expected["names"]
    np.testing.assert_array_equal(votes, expected["votes"])
    examples = list(ferplus.iter_folder_examples(expected["dir"]))
    assert [name for name, _, _ in examples] == expected["names"]
    np.testing.assert_array_equal(np.stack([image for _, image, _ in examples]), expected["images"])
    np.testing.assert_array_equal(np.stack([v for _, _, v in examples]), expected["votes"])
    assert examples[0][1].dtype == np.uint8 and examples[0][1].shape == (48, 48, 1)


def test_ferplus_split_names_and_missing_split(tmp_path) -> None:
    written = fixtures.write_ferplus_folders(str(tmp_path), sizes={"valid": 8})
    assert ferplus.split_names(str(tmp_path)) == ["valid"]
    with pytest.raises(DataNotFoundError, match=r"split 'train' not found"):
        ferplus.load(str(tmp_path), splits=["train"])
    with pytest.raises(ValueError, match=r"unknown split 'dev'"):
        ferplus.load(str(tmp_path), splits=["dev"])
    with pytest.raises(ValueError, match="label_mode"):
        ferplus.load(str(tmp_path), label_mode="soft")
    assert len(ferplus.load(str(tmp_path)).split("valid")) == (written["splits"]["valid"]["majority"] >= 0).sum()


def test_ferplus_detect_layout_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path)) + ".*FER2013Train"):
        ferplus.detect_layout(str(tmp_path))
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")  # half a Kaggle pair is no data set
    with pytest.raises(FileNotFoundError, match="fer2013new.csv"):
        ferplus.detect_layout(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not found"):
        ferplus.detect_layout(str(tmp_path / "absent"))


# ---------------------------------------------------------------------------- FERPlus Kaggle pair


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> dict:
    root = str(tmp_path_factory.mktemp("ferplus_kaggle"))
    return {"root": root, **fixtures.write_ferplus_kaggle(root)}


def test_ferplus_kaggle_load(kaggle) -> None:
    root = kaggle["root"]
    assert ferplus.detect_layout(root) == "kaggle"
    assert ferplus.split_names(root) == ["train", "valid", "test"]
    assert all(kaggle["splits"][s]["removed"] >= 1 for s in ("train", "valid", "test"))
    dataset = ferplus.load(root, "distribution")
    assert list(dataset.splits) == ["train", "valid", "test"]
    check_ferplus_split(dataset.split("train"), kaggle["splits"]["train"], "distribution")
    for split in ("valid", "test"):
        check_ferplus_split(dataset.split(split), kaggle["splits"][split], "majority")


def test_ferplus_kaggle_read_split_and_iter(kaggle) -> None:
    fer_csv, new_csv = kaggle["fer2013_csv"], kaggle["fer2013new_csv"]
    expected = kaggle["splits"]["valid"]
    check_ferplus_split(ferplus.read_kaggle(fer_csv, new_csv, {"valid": "majority"})["valid"], expected, "majority")
    distribution = ferplus.read_kaggle(fer_csv, new_csv, {"valid": "distribution"})["valid"]
    check_ferplus_split(distribution, expected, "distribution")
    examples = list(ferplus.iter_kaggle_examples(fer_csv, new_csv, "test"))
    expected = kaggle["splits"]["test"]
    assert [name for name, _, _ in examples] == expected["names"]  # removed rows skipped
    np.testing.assert_array_equal(np.stack([image for _, image, _ in examples]), expected["images"])
    np.testing.assert_array_equal(np.stack([v for _, _, v in examples]), expected["votes"])


# ---------------------------------------------------------------------------- RAF-DB and FER2013


def test_rafdb_load(tmp_path) -> None:
    written = fixtures.write_rafdb(str(tmp_path))
    assert rafdb.basic_dir(str(tmp_path)) == written["basic"]
    assert rafdb.basic_dir(written["basic"]) == written["basic"]
    partition = rafdb.read_partition(str(tmp_path))
    for split in ("train", "test"):
        expected = written["splits"][split]
        assert partition[split] == list(zip(expected["names"], expected["labels"].tolist()))
    for data_dir in (str(tmp_path), written["basic"]):
        dataset = rafdb.load(data_dir)
        assert dataset.name == "rafdb" and dataset.class_names == rafdb.CLASS_NAMES
        assert list(dataset.splits) == ["train", "test"]
        for split in ("train", "test"):
            loaded, expected = dataset.split(split), written["splits"][split]
            n = len(expected["labels"])
            assert loaded.images.dtype == np.uint8 and loaded.images.shape == (n, 100, 100, 3)
            assert loaded.labels.dtype == np.int32 and loaded.targets is None
            np.testing.assert_array_equal(loaded.labels, expected["labels"])
            np.testing.assert_array_equal(np.bincount(loaded.labels, minlength=7), np.full(7, n // 7))
            # JPEG is lossy: compare pixels loosely, and the intensity signal exactly.
            diff = np.abs(loaded.images.astype(float) - expected["images"]).mean(axis=(1, 2, 3))
            assert diff.max() < JPEG_TOLERANCE
            assert [fixtures.signal_index(image, n) for image in loaded.images] == list(range(n))
    name, image, label = next(rafdb.iter_examples(str(tmp_path), "test"))
    assert (name, image.shape, image.dtype, label) == (
        "test_0001.jpg",
        (100, 100, 3),
        np.uint8,
        written["splits"]["test"]["labels"][0],
    )
    assert list(rafdb.load(str(tmp_path), splits=["test"]).splits) == ["test"]


def test_fer2013_load(tmp_path) -> None:
    written = fixtures.write_fer2013(str(tmp_path), sizes={"train": 14, "valid": 7, "test": 8})
    assert fer2013.csv_path(str(tmp_path)) == written["csv"]
    assert fer2013.csv_path(written["csv"]) == written["csv"]
    for data_dir in (str(tmp_path), written["csv"]):
        dataset = fer2013.load(data_dir)
        assert dataset.name == "fer2013" and dataset.class_names == fer2013.CLASS_NAMES
        assert list(dataset.splits) == ["train", "valid", "test"]
        for split, expected in written["splits"].items():
            loaded = dataset.split(split)
            assert loaded.images.dtype == np.uint8 and loaded.images.shape == (len(expected["labels"]), 48, 48, 1)
            assert loaded.labels.dtype == np.int32
            np.testing.assert_array_equal(loaded.labels, expected["labels"])
            np.testing.assert_array_equal(loaded.images, expected["images"])
            assert np.bincount(loaded.labels, minlength=7).min() >= 1
    examples = list(fer2013.iter_examples(str(tmp_path), "valid"))
    assert (
        [name for name, _, _ in examples]
        == written["splits"]["valid"]["names"]
        == [f"PublicTest_{i}" for i in range(14, 21)]
    )
    assert [label for _, _, label in examples] == written["splits"]["valid"]["labels"].tolist()
    assert list(fer2013.load(str(tmp_path), splits=["test"]).splits) == ["test"]
    with pytest.raises(FileNotFoundError, match="fer2013.csv"):
        fer2013.csv_path(str(tmp_path / "absent"))


# ---------------------------------------------------------------------------- errors


CLEAR = [0, 8, 2, 0, 0, 0, 0, 0, 0, 0]  # a happiness majority: the image is read


def small_split(tmp_path, n: int = 3) -> tuple[str, str, list[str], np.ndarray]:
    """A FER2013Test folder with n clear rows -> (folder, label.csv, names, images)."""
    split_dir = str(tmp_path / "FER2013Test")
    names = [f"fer{i:07d}.png" for i in range(n)]
    images = fixtures.signal_images(np.random.default_rng(0), n, (48, 48, 1))
    label_csv = fixtures.write_ferplus_split(split_dir, names, np.array([CLEAR] * n), images)
    return split_dir, label_csv, names, images


def replace_line(path: str, line: int, text: str) -> None:
    with open(path) as f:
        lines = f.read().split("\n")
    lines[line - 1] = text
    with open(path, "w") as f:
        f.write("\n".join(lines))


def test_folder_error_missing_image(tmp_path) -> None:
    split_dir, label_csv, names, _ = small_split(tmp_path)
    os.remove(os.path.join(split_dir, names[1]))
    with pytest.raises(FileNotFoundError, match=where(label_csv, 2) + ".*not found.*" + re.escape(names[1])):
        ferplus.read_folder_split(split_dir)
    with pytest.raises(FileNotFoundError, match=where(label_csv, 2)):
        list(ferplus.iter_folder_examples(split_dir))


@pytest.mark.parametrize(
    "image, message",
    [(np.zeros((40, 48), np.uint8), "40x48 L, expected 48x48 L"), (np.zeros((48, 48, 3), np.uint8), "48x48 RGB")],
)
def test_folder_error_bad_image(tmp_path, image, message) -> None:
    split_dir, label_csv, names, _ = small_split(tmp_path)
    Image.fromarray(image).save(os.path.join(split_dir, names[2]))
    with pytest.raises(ValueError, match=where(label_csv, 3) + ".*" + re.escape(message)):
        ferplus.load(str(tmp_path))


def test_folder_error_undecodable_image(tmp_path) -> None:
    split_dir, label_csv, names, _ = small_split(tmp_path)
    with open(os.path.join(split_dir, names[0]), "wb") as f:
        f.write(b"not a png")
    with pytest.raises(ValueError, match=where(label_csv, 1) + " cannot decode"):
        ferplus.read_folder_split(split_dir)


@pytest.mark.parametrize(
    "row, message",
    [
        ('fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0', "expected 12 columns, got 11"),
        ('fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0,0', "expected 12 columns, got 13"),
        ('fer0000001.png,"(0, 0, 48, 48)",0,8,2.5,0,0,0,0,0,0,0', "vote 'surprise' is not an integer: '2.5'"),
        ('fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,x,0', "vote 'unknown' is not an integer: 'x'"),
        ('fer0000001.png,"(0, 0, 48, 48)",0,8,-2,0,0,0,0,0,0,0', "vote 'surprise' is negative"),
        (',"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0', "empty image name"),
    ],
)
def test_label_csv_errors(tmp_path, row, message) -> None:
    split_dir, label_csv, _, _ = small_split(tmp_path)
    replace_line(label_csv, 2, row)
    with pytest.raises(ValueError, match=where(label_csv, 2) + " " + re.escape(message)) as info:
        ferplus.read_label_csv(label_csv)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=where(label_csv, 2)):
        ferplus.load(str(tmp_path))


def test_folder_error_no_label_csv(tmp_path) -> None:
    split_dir, label_csv, _, _ = small_split(tmp_path)
    os.remove(label_csv)
    with pytest.raises(FileNotFoundError, match=re.escape(split_dir) + ".*no label.csv"):
        ferplus.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no label.csv"):
        list(ferplus.iter_folder_examples(split_dir))


@pytest.fixture
def small_kaggle(tmp_path) -> dict:
    return fixtures.write_ferplus_kaggle(str(tmp_path), sizes={"train": 3, "valid": 3, "test": 2})


def test_kaggle_error_pixel_count(small_kaggle) -> None:
    fer_csv = small_kaggle["fer2013_csv"]
    # Row 0 (line 2) is never removed by the fixture; the iterator parses every row FER+ kept.
    replace_line(fer_csv, 2, "0," + " ".join(["7"] * 2303) + ",Training")
    with pytest.raises(ValueError, match=where(fer_csv, 2) + " expected 2304 pixels.*got 2303"):
        list(ferplus.iter_kaggle_examples(fer_csv, small_kaggle["fer2013new_csv"], "train"))


def test_kaggle_error_pixel_value(small_kaggle) -> None:
    fer_csv = small_kaggle["fer2013_csv"]
    replace_line(fer_csv, 2, "0," + " ".join(["7"] * 2303 + ["256"]) + ",Training")
    with pytest.raises(ValueError, match=where(fer_csv, 2) + " pixel 2303 is 256"):
        list(ferplus.iter_kaggle_examples(fer_csv, small_kaggle["fer2013new_csv"], "train"))


def test_kaggle_error_unknown_usage(small_kaggle) -> None:
    fer_csv, new_csv = small_kaggle["fer2013_csv"], small_kaggle["fer2013new_csv"]
    replace_line(new_csv, 5, "Validation,fer0000003.png,10,0,0,0,0,0,0,0,0,0")
    with pytest.raises(ValueError, match=where(new_csv, 5) + " unknown Usage 'Validation'"):
        ferplus.read_kaggle(fer_csv, new_csv, {"valid": "majority"})
    replace_line(fer_csv, 4, "0," + " ".join(["7"] * 2304) + ",Train")
    with pytest.raises(ValueError, match=where(fer_csv, 4) + " unknown Usage 'Train'"):
        ferplus.read_kaggle(fer_csv, new_csv, {"test": "majority"})


def test_kaggle_error_usage_differs(small_kaggle) -> None:
    fer_csv, new_csv = small_kaggle["fer2013_csv"], small_kaggle["fer2013new_csv"]
    replace_line(new_csv, 4, "PublicTest,fer0000002.png,10,0,0,0,0,0,0,0,0,0")
    with pytest.raises(ValueError, match=where(new_csv, 4) + " Usage 'PublicTest' differs.*misaligned"):
        ferplus.load(os.path.dirname(fer_csv))


@pytest.mark.parametrize("shorter", ["fer2013.csv", "fer2013new.csv"])
def test_kaggle_error_row_counts_differ(small_kaggle, shorter) -> None:
    fer_csv, new_csv = small_kaggle["fer2013_csv"], small_kaggle["fer2013new_csv"]
    short = fer_csv if shorter == "fer2013.csv" else new_csv
    with open(short) as f:
        lines = f.read().splitlines()
    with open(short, "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")
    other = new_csv if short == fer_csv else fer_csv
    with pytest.raises(ValueError, match=where(other, 9) + ".*misaligned"):
        ferplus.read_kaggle(fer_csv, new_csv, {"train": "majority"})


def test_kaggle_error_vote_and_columns(small_kaggle) -> None:
    fer_csv, new_csv = small_kaggle["fer2013_csv"], small_kaggle["fer2013new_csv"]
    replace_line(new_csv, 2, "Training,fer0000000.png,10,0,0,0,0,0,zero,0,0,0")
    with pytest.raises(ValueError, match=where(new_csv, 2) + " vote 'fear' is not an integer"):
        ferplus.read_kaggle(fer_csv, new_csv, {"train": "majority"})
    replace_line(new_csv, 2, "Training,fer0000000.png,10,0,0,0,0,0,0,0,0")
    with pytest.raises(ValueError, match=where(new_csv, 2) + " expected 12 columns, got 11"):
        ferplus.read_kaggle(fer_csv, new_csv, {"train": "majority"})
    replace_line(new_csv, 1, "Usage,Image,neutral")
    with pytest.raises(ValueError, match=where(new_csv, 1) + " header lacks"):
        ferplus.read_kaggle(fer_csv, new_csv, {"train": "majority"})


@pytest.fixture
def small_fer2013(tmp_path) -> str:
    return fixtures.write_fer2013(str(tmp_path), sizes={"train": 2, "valid": 2, "test": 2})["csv"]


@pytest.mark.parametrize(
    "row, message",
    [
        ("9,{pixels},PublicTest", "unknown label 9"),
        ("happy,{pixels},PublicTest", "unknown label 'happy'"),
        ("1,{pixels},Public", "unknown Usage 'Public'"),
        ("1,{pixels} 3,PublicTest", "expected 2304 pixels (48x48), got 2305"),
        ("1,{pixels},PublicTest,x", "expected 3 columns, got 4"),
    ],
)
def test_fer2013_errors(small_fer2013, row, message) -> None:
    replace_line(small_fer2013, 4, row.format(pixels=" ".join(["9"] * 2304)))
    with pytest.raises(ValueError, match=where(small_fer2013, 4) + " " + re.escape(message)):
        fer2013.load(small_fer2013)
    with pytest.raises(ValueError, match=where(small_fer2013, 4)):
        list(fer2013.iter_examples(small_fer2013, "valid"))


def test_fer2013_error_header(small_fer2013) -> None:
    replace_line(small_fer2013, 1, "label,pixels,Usage")
    with pytest.raises(ValueError, match=where(small_fer2013, 1) + r" header lacks column\(s\) \['emotion'\]"):
        fer2013.load(small_fer2013)


@pytest.fixture
def small_rafdb(tmp_path) -> dict:
    return fixtures.write_rafdb(str(tmp_path), sizes={"train": 2, "test": 2})


@pytest.mark.parametrize(
    "row, message",
    [
        ("train_00002.jpg 8", "unknown label 8; expected 1..7"),
        ("train_00002.jpg 0", "unknown label 0"),
        ("train_00002.jpg five", "unknown label 'five'"),
        ("train_00002.jpg", "expected 2 columns (image label), got 1"),
        ("train_00002.jpg 5 1", "expected 2 columns (image label), got 3"),
        ("val_00002.jpg 5", "image name 'val_00002.jpg' starts with neither train_ nor test_"),
    ],
)
def test_rafdb_partition_errors(small_rafdb, row, message) -> None:
    partition = small_rafdb["partition"]
    replace_line(partition, 2, row)
    with pytest.raises(ValueError, match=where(partition, 2) + " " + re.escape(message)):
        rafdb.read_partition(small_rafdb["root"])
    with pytest.raises(ValueError, match=where(partition, 2)):
        rafdb.load(small_rafdb["root"])


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((100, 90, 3), np.uint8), "100x90 RGB, expected 100x100 RGB"),
        (np.zeros((100, 100), np.uint8), "100x100 L, expected 100x100 RGB"),
        (None, "image file not found"),
    ],
)
def test_rafdb_image_errors(small_rafdb, image, message) -> None:
    path = os.path.join(small_rafdb["basic"], "Image", "aligned", "test_0002_aligned.jpg")
    if image is None:
        os.remove(path)
    else:
        Image.fromarray(image).save(path)
    error = FileNotFoundError if image is None else ValueError
    partition = small_rafdb["partition"]
    with pytest.raises(error, match=where(partition, 4) + ".*" + re.escape(message)):
        rafdb.load(small_rafdb["root"])
    with pytest.raises(error, match=where(partition, 4)):
        list(rafdb.iter_examples(small_rafdb["root"], "test"))


def test_rafdb_missing_partition(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path)) + ".*list_patition_label.txt"):
        rafdb.basic_dir(str(tmp_path))


# ---------------------------------------------------------------------------- real FERPlus


def real_split_dir(split: str) -> str:
    path = os.path.join(REAL_FERPLUS, ferplus.FOLDERS[split])
    if not os.path.isfile(os.path.join(path, "label.csv")):
        pytest.skip(f"real FERPlus not found at {path}")
    return path


@pytest.mark.parametrize("split", ["train", "valid"])
def test_real_ferplus_majority_counts_from_labels(split) -> None:
    _, votes, _ = ferplus.read_label_csv(os.path.join(real_split_dir(split), "label.csv"))
    keep, labels, _ = ferplus.votes_to_labels(votes, "majority")
    counts, dropped = REAL_COUNTS[split]
    assert np.bincount(labels[keep], minlength=8).tolist() == counts
    assert (int(keep.sum()), int((~keep).sum())) == (sum(counts), dropped)


def test_real_ferplus_valid_loads() -> None:
    split = ferplus.read_folder_split(real_split_dir("valid"))
    counts, _ = REAL_COUNTS["valid"]
    assert split.images.shape == (3191, 48, 48, 1) and split.images.dtype == np.uint8
    assert np.bincount(split.labels, minlength=8).tolist() == counts
    assert split.targets is None
