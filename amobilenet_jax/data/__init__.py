"""Data sets by name. A loader returns uint8 images at native size plus labels;
everything after that (sampling, augmentation, resizing) happens on the device."""

from __future__ import annotations

import numpy as np

from amobilenet_jax.data.dataset import Dataset, Split
from amobilenet_jax.errors import ConfigError, DataNotFoundError

__all__ = ["Dataset", "Split", "class_names", "load_dataset", "native_shape", "split_names"]


SYNTHETIC_SPLITS = ("train", "test")


def _load_synthetic(data_config, splits=None) -> Dataset:
    from amobilenet_jax.data import synthetic

    # A fixed data seed: runs that differ in config.seed see the same faces.
    raw = synthetic.load_splits(data_config.num_train, data_config.num_test, seed=0, difficulty=data_config.difficulty)
    wanted = list(raw) if splits is None else list(splits)
    for name in wanted:
        if name not in raw:
            raise DataNotFoundError(f"data set 'synthetic' has no split {name!r}; it has {list(raw)}")
    chosen = {name: Split(raw[name][0], raw[name][1].astype(np.int32)) for name in wanted}
    return Dataset("synthetic", synthetic.CLASS_NAMES, chosen)


def _default_cache_dir(name: str, data_dir: str) -> str:
    """``<data_dir>/.tfds`` when the data directory is writable, else a per-user cache."""
    import os

    base = data_dir if os.path.isdir(data_dir) else os.path.dirname(os.path.abspath(data_dir))
    if os.access(base, os.W_OK):
        return os.path.join(base, ".tfds")
    return os.path.join(os.path.expanduser("~"), ".cache", "amobilenet_jax", "tfds", name)


def _load_real(data_config, splits=None) -> Dataset:
    """FERPlus, RAF-DB or FER2013: prepared once into ArrayRecord by TFDS, then read back.

    ``data.on_error`` says what a bad image or row does (see ``tfds_builders.prepare``).
    """
    from amobilenet_jax.data import tfds_builders

    if not data_config.dir:
        raise ConfigError(f"data.dir must point at the {data_config.name} data (e.g. --config.data.dir=/data/ferplus)")
    cache_dir = data_config.cache_dir or _default_cache_dir(data_config.name, data_config.dir)
    return tfds_builders.load_prepared(
        data_config.name,
        data_config.dir,
        data_config.label_mode,
        cache_dir=cache_dir,
        splits=splits,
        on_error=getattr(data_config, "on_error", "raise"),  # a config.json from before the field
    )


LOADERS = {"synthetic": _load_synthetic, "ferplus": _load_real, "rafdb": _load_real, "fer2013": _load_real}


def _check_name(name: str) -> None:
    if name not in LOADERS:
        raise ConfigError(f"data.name must be one of {sorted(LOADERS)}, got {name!r}")


def class_names(name: str) -> tuple[str, ...]:
    """Class names of a data set, without reading any data."""
    _check_name(name)
    from importlib import import_module

    return import_module(f"amobilenet_jax.data.{name}").CLASS_NAMES


# (height, width, channels) of each data set's stored images: what training saw before
# data.image_size resizing, and what a face crop is turned into at prediction time.
NATIVE_SHAPES = {"ferplus": (48, 48, 1), "fer2013": (48, 48, 1), "synthetic": (48, 48, 1), "rafdb": (100, 100, 3)}


def native_shape(name: str) -> tuple[int, int, int]:
    """``(height, width, channels)`` of a data set's stored images, without reading any data."""
    _check_name(name)
    return NATIVE_SHAPES[name]


def split_names(data_config) -> list[str]:
    """The splits the data set has, without preparing or reading its images."""
    _check_name(data_config.name)
    if data_config.name == "synthetic":
        return list(SYNTHETIC_SPLITS)
    if not data_config.dir:
        raise ConfigError(f"data.dir must point at the {data_config.name} data (e.g. --config.data.dir=/data/ferplus)")
    from amobilenet_jax.data import tfds_builders

    return tfds_builders.split_names(data_config.name, data_config.dir)


def load_dataset(data_config, splits=None) -> Dataset:
    """Loads the data set named by ``data_config.name`` into host memory: every split, or only
    ``splits`` (those alone are prepared and read: evaluation needs no training split).

    Data errors are ``errors.DataError`` / ``DataNotFoundError``, one line naming the file
    and row; ``data.on_error="skip"`` skips bad images and rows instead and lists them in
    ``Dataset.skipped`` (the synthetic set has none).
    """
    _check_name(data_config.name)
    return LOADERS[data_config.name](data_config, splits)
