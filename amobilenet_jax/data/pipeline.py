"""Feeding the device: splits live on the accelerator, batches are index gathers.

FER splits are small (FERPlus train is about 66 MB at 48x48), so each split is put
on the device once and a step's batch is a gather by indices. The indices are a
pure function of (seed, step): resuming at step s yields the same batches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from amobilenet_jax.data.dataset import Split


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every host); the batch is split along ``data``."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


BALANCE_MODES = ("none", "oversample", "power")
PIPELINES = ("device", "grain")  # data.pipeline: splits on the device, augmented in jit | a host-side Grain loader


def class_draws(counts: np.ndarray, balance: str, power: float = 0.5) -> np.ndarray:
    """How many examples of each class (of ``counts`` examples each) one epoch draws.

    ``none``: each class's own count. ``oversample``: the largest class's count for every
    class. ``power``: ``n_c ** (1 - power) * n_max ** power``, between the two (``power``
    0 is ``none``, 1 is ``oversample``; 0.5 draws each class at the geometric mean of its
    own and the largest class's size, i.e. in proportion to the square root of its size).
    """
    counts = np.asarray(counts, np.int64)
    if balance == "none":
        return counts
    if balance == "oversample":
        return np.full_like(counts, counts.max())
    if balance == "power":
        if not 0.0 <= power <= 1.0:
            raise ValueError(f"data.balance_power must be in [0, 1], got {power!r}")
        return np.round(counts ** (1.0 - power) * float(counts.max()) ** power).astype(np.int64)
    raise ValueError(f"data.balance must be one of {BALANCE_MODES}, got {balance!r}")


def epoch_order(seed: int, epoch: int, labels: np.ndarray, balance: str, power: float = 0.5) -> np.ndarray:
    """The example indices of one epoch, a pure function of (seed, epoch).

    ``none``: a permutation of the split. ``oversample`` and ``power``: each class is drawn
    ``class_draws`` times (whole passes over its own shuffled examples, then a random
    remainder), and the result is shuffled; the repeats of minority examples differ through
    augmentation. ``oversample`` balances every epoch.
    """
    rng = np.random.default_rng([seed, epoch])
    if balance == "none":
        return rng.permutation(len(labels))
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == k) for k in classes]
    draws = class_draws(np.array([len(members) for members in by_class]), balance, power)
    parts = []
    for members, target in zip(by_class, draws):
        repeats, remainder = divmod(int(target), len(members))
        parts += [rng.permutation(members) for _ in range(repeats)]
        parts.append(rng.choice(members, remainder, replace=False))
    return rng.permutation(np.concatenate(parts))


class TrainOrder:
    """Indices of training step ``step``: seeded per-epoch orders, optionally class-balanced."""

    def __init__(self, seed: int, labels: np.ndarray, batch_size: int, balance: str = "none", power: float = 0.5):
        self.seed = seed
        self.labels = np.asarray(labels)
        self.balance = balance
        self.power = power
        self.batch_size = batch_size
        self.epoch_size = len(epoch_order(seed, 0, self.labels, balance, power))
        if self.epoch_size < batch_size:
            raise ValueError(f"the training split has {self.epoch_size} examples, fewer than one batch ({batch_size})")
        self.steps_per_epoch = self.epoch_size // batch_size  # the last partial batch is dropped
        self._cached_epoch = -1
        self._order = np.empty(0, np.int64)

    def indices(self, step: int) -> np.ndarray:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._cached_epoch:
            self._order = epoch_order(self.seed, epoch, self.labels, self.balance, self.power)
            self._cached_epoch = epoch
        start = offset * self.batch_size
        return self._order[start : start + self.batch_size].astype(np.int32)


class DeviceSplit:
    """A split replicated on every device of ``mesh``; ``batch(idx)`` gathers sharded batches."""

    def __init__(self, split: Split, mesh: Mesh, extra: dict[str, np.ndarray] | None = None):
        """``extra``: more per-example arrays (``[N, ...]``) that batches gather alongside."""
        self.mesh = mesh
        self.size = len(split)
        replicated = NamedSharding(mesh, P())
        arrays = {"image": split.images, "label": split.labels.astype(np.int32)}
        if split.targets is not None:
            arrays["target"] = split.targets.astype(np.float32)
        arrays.update(extra or {})
        self.arrays = jax.device_put(arrays, replicated)
        self.batch_sharding = NamedSharding(mesh, P("data"))
        self._gather = jax.jit(_gather, out_shardings=self.batch_sharding)

    def batch(self, indices: np.ndarray) -> dict[str, jax.Array]:
        idx = jax.device_put(indices.astype(np.int32), self.batch_sharding)
        return self._gather(self.arrays, idx)

    def eval_batches(self, batch_size: int):
        """Yields ``(batch, mask)`` covering the split once; the last batch is padded."""
        num_shards = self.mesh.devices.size
        batch_size = -(-batch_size // num_shards) * num_shards
        for start in range(0, self.size, batch_size):
            idx = np.arange(start, start + batch_size)
            mask = idx < self.size
            batch = self.batch(np.where(mask, idx, 0))
            batch["mask"] = jax.device_put(mask, self.batch_sharding)
            yield batch


def _gather(arrays: dict[str, jax.Array], idx: jax.Array) -> dict[str, jax.Array]:
    return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}
