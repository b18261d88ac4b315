"""What a loader returns: named splits of uint8 images at native size, and their labels."""

from __future__ import annotations

import dataclasses

import numpy as np

from amobilenet_jax.errors import DataNotFoundError


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
    """Named splits plus where they came from.

    skipped: one one-line reason (``file:row: why``) per image or row left out under
      ``data.on_error="skip"``, across all splits; empty when nothing was skipped.
    source: the data directory read (empty for generated data); error messages name it.
    """

    name: str
    class_names: tuple[str, ...]
    splits: dict[str, Split]
    skipped: tuple[str, ...] = ()
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            where = f"{self.source}: " if self.source else ""
            raise DataNotFoundError(f"{where}data set {self.name!r} has no split {name!r}; it has {list(self.splits)}")
        return self.splits[name]
