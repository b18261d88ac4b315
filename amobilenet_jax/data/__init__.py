"""Data sets by name. A loader returns uint8 images at native size plus labels;
everything after that (sampling, augmentation, resizing) happens on the device."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """One split held in host memory.

    images: uint8 ``[N, H, W, C]`` at native size (C is 1 for grayscale, 3 for RGB).
    labels: int32 ``[N]`` hard labels (what evaluation and center loss use).
    targets: optional float32 ``[N, K]`` soft training targets (label distributions).
    """

    images: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    class_names: tuple[str, ...]
    splits: dict[str, Split]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise ValueError(f"data set {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]


def _load_synthetic(data_config) -> Dataset:
    from amobilenet_jax.data import synthetic

    # A fixed data seed: runs that differ in config.seed see the same faces.
    raw = synthetic.load_splits(data_config.num_train, data_config.num_test, seed=0, difficulty=data_config.difficulty)
    splits = {name: Split(images, labels.astype(np.int32)) for name, (images, labels) in raw.items()}
    return Dataset("synthetic", synthetic.CLASS_NAMES, splits)


LOADERS = {"synthetic": _load_synthetic}


def class_names(name: str) -> tuple[str, ...]:
    """Class names of a data set, without reading any data."""
    if name == "synthetic":
        from amobilenet_jax.data import synthetic

        return synthetic.CLASS_NAMES
    raise ValueError(f"data.name must be one of {sorted(LOADERS)}, got {name!r}")


def load_dataset(data_config) -> Dataset:
    """Loads the data set named by ``data_config.name`` into host memory."""
    if data_config.name not in LOADERS:
        raise ValueError(f"data.name must be one of {sorted(LOADERS)}, got {data_config.name!r}")
    return LOADERS[data_config.name](data_config)
