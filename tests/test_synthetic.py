"""Tests for the synthetic FERPlus stand-in: format, determinism, and that the classes
differ where the drawing says they should (mouth, brows) without being identical copies."""

from __future__ import annotations

import numpy as np
import pytest

from amobilenet_jax.data import synthetic

NE, HA, SU, SA, AN, DI, FE, CO = range(8)

# Pixel regions of a 48x48 face at the canonical pose (face unit = 24 px, centre at 23.5).
MOUTH_CORNER_COLS = np.r_[16:20, 28:32]  # |u| ~ 0.17..0.35: inside every mouth's corners
ABOVE_MOUTH_ROWS, BELOW_MOUTH_ROWS = slice(32, 36), slice(38, 42)  # mouth line at row ~37
MOUTH_CENTRE = (slice(34, 40), slice(22, 26))
INNER_BROW_COLS = np.r_[20:22, 26:28]  # between the eyes, where only the brows' inner ends reach
HIGH_BROW_ROWS, LOW_BROW_ROWS = slice(11, 16), slice(17, 22)


def class_means(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class mean image, float [8, H, W]."""
    pixels = images[..., 0].astype(np.float64)
    return np.stack([pixels[labels == c].mean(0) for c in range(synthetic.NUM_CLASSES)])


def smile_index(means: np.ndarray) -> np.ndarray:
    """Per class: brightness below minus above the mouth line at the corners (> 0: corners up)."""
    profile = means[:, :, MOUTH_CORNER_COLS].mean(2)
    return profile[:, BELOW_MOUTH_ROWS].mean(1) - profile[:, ABOVE_MOUTH_ROWS].mean(1)


def inner_brow_low_index(means: np.ndarray) -> np.ndarray:
    """Per class: brightness high minus low at the inner brow ends (> 0: inner ends lowered)."""
    profile = means[:, :, INNER_BROW_COLS].mean(2)
    return profile[:, HIGH_BROW_ROWS].mean(1) - profile[:, LOW_BROW_ROWS].mean(1)


@pytest.fixture(scope="module")
def hard() -> tuple[np.ndarray, np.ndarray]:
    return synthetic.generate(800, seed=0, difficulty=1.0)


@pytest.fixture(scope="module")
def easy() -> tuple[np.ndarray, np.ndarray]:
    return synthetic.generate(800, seed=0, difficulty=0.0)


def test_class_names() -> None:
    assert synthetic.CLASS_NAMES == (
        "neutral",
        "happiness",
        "surprise",
        "sadness",
        "anger",
        "disgust",
        "fear",
        "contempt",
    )
    assert synthetic.CLASS_ABBREVIATIONS == ("NE", "HA", "SU", "SA", "AN", "DI", "FE", "CO")
    assert synthetic.IMAGE_SIZE == 48


def test_shapes_dtypes_and_ranges(hard: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = hard
    assert images.shape == (800, 48, 48, 1) and images.dtype == np.uint8
    assert labels.shape == (800,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 8
    # Real use of the 8-bit range: dark background and features, bright skin, no blank images.
    assert images.min() < 30 and images.max() > 220
    assert (images.reshape(800, -1).std(1) > 10).all()


def test_other_sizes_and_empty() -> None:
    images, labels = synthetic.generate(5, seed=1, image_size=32)
    assert images.shape == (5, 32, 32, 1) and labels.shape == (5,)
    images, labels = synthetic.generate(0, seed=1)
    assert images.shape == (0, 48, 48, 1) and labels.shape == (0,) and labels.dtype == np.int32


def test_labels_balanced(hard: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = hard
    assert (np.bincount(labels, minlength=8) == 100).all()
    # Every aligned run of 8 is a permutation of the classes, so any prefix is balanced too.
    assert (np.sort(labels.reshape(-1, 8), axis=1) == np.arange(8)).all()
    counts = np.bincount(synthetic.generate(43, seed=5)[1], minlength=8)
    assert counts.max() - counts.min() <= 1
    # Shuffled, not round-robin in class order.
    assert not np.array_equal(labels, np.tile(np.arange(8), 100))


def test_deterministic_and_seed_dependent() -> None:
    first, second = synthetic.generate(70, seed=3), synthetic.generate(70, seed=3)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    other = synthetic.generate(70, seed=4)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[1], other[1])


def test_prefix_property() -> None:
    # 300 crosses a chunk (256) and several block (64) boundaries; 77 is aligned to neither.
    long_images, long_labels = synthetic.generate(300, seed=9)
    short_images, short_labels = synthetic.generate(77, seed=9)
    assert np.array_equal(long_images[:77], short_images)
    assert np.array_equal(long_labels[:77], short_labels)


def test_feature_windows_are_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawing features only inside their pixel box must equal drawing on the full grid,
    otherwise an example would depend on which other examples share its chunk."""
    windowed = synthetic.generate(300, seed=2, difficulty=2.0)
    monkeypatch.setattr(synthetic, "_window", lambda p, size, *box: (slice(None), slice(None)))
    full = synthetic.generate(300, seed=2, difficulty=2.0)
    assert np.array_equal(windowed[0], full[0])


def test_load_splits() -> None:
    splits = synthetic.load_splits(40, 24, seed=7)
    assert set(splits) == {"train", "test"}
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    assert train_x.shape == (40, 48, 48, 1) and test_x.shape == (24, 48, 48, 1)
    assert train_y.shape == (40,) and test_y.shape == (24,)
    for (images, labels), expected in zip(
        (splits["train"], splits["test"]),
        (synthetic.generate(40, seed=7), synthetic.generate(24, seed=7 + synthetic.TEST_SEED_OFFSET)),
        strict=True,
    ):
        assert np.array_equal(images, expected[0]) and np.array_equal(labels, expected[1])
    # Different streams: no test image repeats a train image.
    train_set = {image.tobytes() for image in train_x}
    assert not any(image.tobytes() in train_set for image in test_x)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        synthetic.generate(4, seed=-1)
    with pytest.raises(ValueError):
        synthetic.generate(4, seed=0, difficulty=-0.5)
    with pytest.raises(ValueError):
        synthetic.generate(-1, seed=0)


def test_canonical_faces_show_the_expressions(easy: tuple[np.ndarray, np.ndarray]) -> None:
    means = class_means(*easy)
    smile = smile_index(means)
    assert smile[HA] > 0 > smile[NE] > smile[SA]  # smile corners up, sad corners down
    centre = means[(slice(None), *MOUTH_CENTRE)].mean((1, 2))
    assert centre[SU] < centre[NE] - 50 and centre[FE] < centre[NE] - 30  # open mouths are dark
    brows = inner_brow_low_index(means)
    assert brows[AN] > 10 and brows[SA] < -10  # angry V brows, sad raised inner ends
    # Contempt's one-sided smirk makes the mouth asymmetric; the neutral face is symmetric.
    images, labels = easy
    mouth = images[:, 30:44, :, 0].astype(np.float64)
    asymmetry = np.abs(mouth - mouth[:, :, ::-1]).mean((1, 2))
    assert asymmetry[labels == CO].min() > 2.0 and asymmetry[labels == NE].max() < 0.5


def test_expressions_survive_nuisance_variation(hard: tuple[np.ndarray, np.ndarray]) -> None:
    """At difficulty 1 pose and lighting blur the class means, but the cues keep their sign."""
    means = class_means(*hard)
    smile = smile_index(means)
    assert smile[HA] > smile[NE] > smile[SA] and smile[HA] > smile[SA] + 5
    centre = means[(slice(None), *MOUTH_CENTRE)].mean((1, 2))
    assert centre[SU] < centre[NE] - 20
    brows = inner_brow_low_index(means)
    assert brows[AN] > 4 and brows[SA] < -4


def test_classes_overlap_at_difficulty_one(hard: tuple[np.ndarray, np.ndarray]) -> None:
    """Not trivially separable: nearest class mean on raw pixels is far from perfect."""
    images, labels = hard
    pixels = images.reshape(len(images), -1).astype(np.float64)
    train, test = slice(0, 640), slice(640, 800)
    means = np.stack([pixels[train][labels[train] == c].mean(0) for c in range(8)])
    predicted = ((pixels[test][:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    accuracy = (predicted == labels[test]).mean()
    assert 1 / 8 - 0.05 < accuracy < 0.5


def test_difficulty_scales_variation(easy: tuple[np.ndarray, np.ndarray], hard) -> None:
    def within_class_variance(images: np.ndarray, labels: np.ndarray) -> float:
        pixels = images[..., 0].astype(np.float64)
        return float(np.mean([pixels[labels == c].var(0).mean() for c in range(8)]))

    easy_variance, hard_variance = within_class_variance(*easy), within_class_variance(*hard)
    assert easy_variance < 0.02 * hard_variance
    # At difficulty 0 every neutral face is the same canonical face.
    images, labels = easy
    neutral = images[labels == NE]
    assert (neutral == neutral[0]).all()
