"""Writers of small data-set trees in exactly the official on-disk layouts.

Every writer takes a root folder, per-split sizes and a seed, draws images and labels
from ``np.random.default_rng(seed)``, and returns what it wrote, with the labels the
readers must produce, worked out here from each row's design (not by calling the
readers).

Images carry a recoverable signal: image ``i`` of a split of ``n`` has mean intensity
close to ``signal_levels(n)[i]`` (a level plus small zero-mean noise), which survives
JPEG, so ``signal_index`` tells which written image a loaded one is.
"""

from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image

FERPLUS_SIZES = {"train": 40, "valid": 16, "test": 16}
RAFDB_SIZES = {"train": 21, "test": 14}
FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
FACE_BOX = "(0, 0, 48, 48)"
NOISE = 6  # +- gray levels around an image's signal level

NE, HA, SU, SA, AN, DI, FE, CO, UNKNOWN, NF = range(10)

# Vote-row designs. Each gets an emotion e and another emotion f != e and returns
# (votes [10], majority label or -1, distribution label or -1, distribution targets {column: p}).
VOTE_KINDS = (
    "clear",  # e 7, f 3: a plain majority
    "singles",  # e 5 + five lone votes: kept only because lone votes are dropped (5 of 10 is no majority)
    "tie",  # e 4, f 4, unknown 2: no majority; as a distribution the emotions win
    "half",  # e 5, f 3, NF 2: exactly half is not a majority; fine as a distribution
    "unknown",  # unknown 6, e 3, f 1: unknown majority, dropped in both modes
    "nf",  # NF 8, e 2: not a face, dropped in both modes
    "all_singles",  # ten lone votes: nothing left, dropped in both modes
    "emotion_unknown_tie",  # e 4, unknown 4, f 2: no majority; distribution keeps e (argmax tie -> emotion)
)


def vote_row(kind: str, e: int, f: int) -> tuple[np.ndarray, int, int, dict[int, float]]:
    """One designed vote row and the labels the FER+ rules give it."""
    v = np.zeros(10, np.int64)
    if kind == "clear":
        v[e], v[f] = 7, 3
        return v, e, e, {e: 0.7, f: 0.3}
    if kind == "singles":
        v[e] = 5
        lone = [c for c in range(10) if c != e][:5]
        v[lone] = 1
        return v, e, e, {e: 1.0}
    if kind == "tie":
        v[e], v[f], v[UNKNOWN] = 4, 4, 2
        return v, -1, min(e, f), {e: 0.5, f: 0.5}
    if kind == "half":
        v[e], v[f], v[NF] = 5, 3, 2
        return v, -1, e, {e: 5 / 8, f: 3 / 8}
    if kind == "unknown":
        v[UNKNOWN], v[e], v[f] = 6, 3, 1
        return v, -1, -1, {}
    if kind == "nf":
        v[NF], v[e] = 8, 2
        return v, -1, -1, {}
    if kind == "all_singles":
        v[:] = 1
        return v, -1, -1, {}
    if kind == "emotion_unknown_tie":
        v[e], v[UNKNOWN], v[f] = 4, 4, 2
        return v, -1, e, {e: 4 / 6, f: 2 / 6}
    raise ValueError(f"unknown vote kind {kind!r}")


def signal_levels(n: int) -> np.ndarray:
    """Mean intensity of image 0..n-1 of a split: evenly spread over 16..240."""
    return 16 + (np.arange(n) * 224) // max(n, 1)


def signal_index(image: np.ndarray, n: int) -> int:
    """Which image of a split of ``n`` this is, from its mean intensity."""
    return int(np.abs(signal_levels(n) - float(np.mean(image))).argmin())


def signal_images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 ``[n, *shape]``: image i is ``signal_levels(n)[i]`` plus noise in [-NOISE, NOISE]."""
    noise = rng.integers(-NOISE, NOISE + 1, size=(n, *shape))
    levels = signal_levels(n).reshape((n,) + (1,) * len(shape))
    return np.clip(levels + noise, 0, 255).astype(np.uint8)


def _sizes(sizes: dict[str, int] | None, default: dict[str, int]) -> dict[str, int]:
    return dict(default if sizes is None else sizes)


def ferplus_votes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Designed vote rows for n images, every kind present when n >= len(VOTE_KINDS)."""
    kinds = rng.permutation(np.arange(n) % len(VOTE_KINDS))
    votes = np.zeros((n, 10), np.int64)
    majority = np.full(n, -1, np.int32)
    distribution = np.full(n, -1, np.int32)
    targets = np.zeros((n, 8), np.float32)
    for i, k in enumerate(kinds):
        e = int(rng.integers(8))
        f = (e + 1 + int(rng.integers(7))) % 8
        votes[i], majority[i], distribution[i], probs = vote_row(VOTE_KINDS[k], e, f)
        for column, p in probs.items():
            targets[i, column] = p
    return {
        "kinds": np.array([VOTE_KINDS[k] for k in kinds]),
        "votes": votes,
        "majority": majority,
        "distribution": distribution,
        "targets": targets,
    }


def write_ferplus_split(split_dir: str, names: list[str], votes: np.ndarray, images: np.ndarray | None) -> str:
    """Writes one ``FER2013*/`` folder (label.csv without header + PNGs) -> the label.csv path.

    ``images`` uint8 ``[N, 48, 48, 1]`` (or any shape PIL takes, to write broken files); None writes no images.
    """
    os.makedirs(split_dir, exist_ok=True)
    path = os.path.join(split_dir, "label.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # as Microsoft's generator: '\n', box quoted
        for name, row in zip(names, votes):
            writer.writerow([name, FACE_BOX, *(int(x) for x in row)])
    if images is not None:
        for name, image in zip(names, images):
            Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(
                os.path.join(split_dir, name)
            )
    return path


def write_ferplus_folders(root: str, sizes: dict[str, int] | None = None, seed: int = 0) -> dict:
    """Writes ``root/FER2013{Train,Valid,Test}/`` (default sizes ``FERPLUS_SIZES``).

    Returns ``{"root", "splits": {split: {"dir", "names", "images" [n,48,48,1], "votes" [n,10],
    "kinds", "majority" [n] (-1 = dropped), "distribution" [n], "targets" [n,8]}}}``.
    Names run fer0000000.png, ... across splits, as in the real data.
    """
    rng = np.random.default_rng(seed)
    out: dict = {"root": root, "splits": {}}
    start = 0
    for split, n in _sizes(sizes, FERPLUS_SIZES).items():
        split_dir = os.path.join(root, FOLDERS[split])
        names = [f"fer{start + i:07d}.png" for i in range(n)]
        start += n
        rows = ferplus_votes(rng, n)
        images = signal_images(rng, n, (48, 48, 1))
        write_ferplus_split(split_dir, names, rows["votes"], images)
        out["splits"][split] = {"dir": split_dir, "names": names, "images": images, **rows}
    return out


def _write_fer2013_csv(path: str, emotions: list[int], images: list[np.ndarray], usages: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["emotion", "pixels", "Usage"])
        for emotion, image, usage in zip(emotions, images, usages):
            writer.writerow([emotion, " ".join(str(int(x)) for x in image.reshape(-1)), usage])


def write_fer2013(root: str, sizes: dict[str, int] | None = None, seed: int = 0) -> dict:
    """Writes Kaggle's ``root/fer2013.csv`` (rows in split order, as the real file).

    Returns ``{"csv", "splits": {split: {"names" ("<Usage>_<row index>"), "images" [n,48,48,1], "labels" [n]}}}``;
    every class appears in a split of at least 7 rows.
    """
    rng = np.random.default_rng(seed)
    out: dict = {"csv": os.path.join(root, "fer2013.csv"), "splits": {}}
    emotions, images, usages = [], [], []
    for split, n in _sizes(sizes, FERPLUS_SIZES).items():
        labels = rng.permutation(np.arange(n) % 7).astype(np.int32)
        split_images = signal_images(rng, n, (48, 48, 1))
        names = [f"{USAGE[split]}_{len(usages) + i}" for i in range(n)]
        out["splits"][split] = {"names": names, "images": split_images, "labels": labels}
        emotions += labels.tolist()
        images += list(split_images)
        usages += [USAGE[split]] * n
    os.makedirs(root, exist_ok=True)
    _write_fer2013_csv(out["csv"], emotions, images, usages)
    return out


def write_ferplus_kaggle(root: str, sizes: dict[str, int] | None = None, seed: int = 0) -> dict:
    """Writes the Kaggle pair ``root/fer2013.csv`` + ``root/fer2013new.csv``, row-aligned.

    ``sizes`` counts rows per Usage. Row 1 of each split, and about one in eight others
    (never row 0), has an empty Image name (removed by FER+); its votes are a clear neutral majority so
    that a reader that fails to skip it is caught. Returns ``{"fer2013_csv",
    "fer2013new_csv", "splits": {split: {...}}}`` where each split describes the rows
    FER+ kept, as ``write_ferplus_folders`` does, plus ``"removed"`` (how many rows were skipped).
    """
    rng = np.random.default_rng(seed)
    fer_csv, new_csv = os.path.join(root, "fer2013.csv"), os.path.join(root, "fer2013new.csv")
    out: dict = {"fer2013_csv": fer_csv, "fer2013new_csv": new_csv, "splits": {}}
    emotions, images, usages, new_rows = [], [], [], []
    for split, n in _sizes(sizes, FERPLUS_SIZES).items():
        removed = rng.random(n) < 0.125
        removed[:1] = False  # row 0 of each split is always kept (error tests edit it)
        if n > 1:
            removed[1] = True
        kept = int((~removed).sum())
        rows = ferplus_votes(rng, kept)
        split_images = signal_images(rng, kept, (48, 48, 1))
        names = []
        k = 0
        for i in range(n):
            index = len(usages)
            usages.append(USAGE[split])
            emotions.append(int(rng.integers(7)))
            if removed[i]:
                images.append(signal_images(rng, 1, (48, 48, 1))[0])
                new_rows.append([USAGE[split], "", 10] + [0] * 9)
                continue
            name = f"fer{index:07d}.png"
            names.append(name)
            images.append(split_images[k])
            new_rows.append([USAGE[split], name, *(int(x) for x in rows["votes"][k])])
            k += 1
        out["splits"][split] = {"names": names, "images": split_images, "removed": int(removed.sum()), **rows}
    os.makedirs(root, exist_ok=True)
    _write_fer2013_csv(fer_csv, emotions, images, usages)
    with open(new_csv, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(
            ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust"]
            + ["fear", "contempt", "unknown", "NF"]
        )
        writer.writerows(new_rows)
    return out


def write_rafdb(root: str, sizes: dict[str, int] | None = None, seed: int = 0) -> dict:
    """Writes ``root/basic/EmoLabel/list_patition_label.txt`` + ``root/basic/Image/aligned/*_aligned.jpg``.

    Names follow the release: train_00001.jpg (5 digits), test_0001.jpg (4 digits); labels
    1..7 in the file, every class present in a split of at least 7. Returns ``{"root",
    "basic", "partition", "splits": {split: {"names", "images" [n,100,100,3] (as written,
    before JPEG), "labels" [n] 0..6}}}``.
    """
    rng = np.random.default_rng(seed)
    basic = os.path.join(root, "basic")
    image_dir = os.path.join(basic, "Image", "aligned")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(basic, "EmoLabel"), exist_ok=True)
    partition = os.path.join(basic, "EmoLabel", "list_patition_label.txt")
    out: dict = {"root": root, "basic": basic, "partition": partition, "splits": {}}
    lines = []
    for split, n in _sizes(sizes, RAFDB_SIZES).items():
        digits = 5 if split == "train" else 4
        names = [f"{split}_{i + 1:0{digits}d}.jpg" for i in range(n)]
        labels = rng.permutation(np.arange(n) % 7).astype(np.int32)
        images = signal_images(rng, n, (100, 100, 3))
        for name, label, image in zip(names, labels, images):
            lines.append(f"{name} {label + 1}\n")
            Image.fromarray(image).save(os.path.join(image_dir, name[: -len(".jpg")] + "_aligned.jpg"), quality=95)
        out["splits"][split] = {"names": names, "images": images, "labels": labels}
    with open(partition, "w") as f:
        f.writelines(lines)
    return out
