"""Host-side input pipeline on Grain, for splits that should not live on the device.

``data.pipeline = "grain"``: batches are gathered in the order of the same
``TrainOrder`` the device pipeline uses, augmented in numpy with the same affine
model as ``augment.py`` (same parameter distributions, same bilinear sampling),
normalised, and prefetched by Grain worker processes. The step's batch then holds
float images at ``data.image_size``; ``train_step`` skips its own augmentation.
Augmentation randomness is a function of (seed, step, position in batch), so the
stream is reproducible and Grain's iterator state resumes it exactly.

On several hosts each process builds only its own rows of every global batch
(``rows``), so the augmentation work is split between hosts and the global batch is
the one a single process would have built.
"""

from __future__ import annotations

import grain
import numpy as np

from amobilenet_jax.data.augment import zoom_scale
from amobilenet_jax.data.dataset import Split
from amobilenet_jax.data.pipeline import TrainOrder


def random_affine_np(rng: np.random.Generator, batch: int, augment_config) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of ``augment.random_affine``: the same distributions per parameter."""
    angle = np.deg2rad(augment_config.rotation) * rng.uniform(-1.0, 1.0, batch)
    scale = zoom_scale(rng.uniform(0.0, 1.0, batch), augment_config)
    shift = 2.0 * augment_config.translate * rng.uniform(-1.0, 1.0, (batch, 2))
    flip = np.where(augment_config.flip & (rng.uniform(0.0, 1.0, batch) < 0.5), -1.0, 1.0)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    matrix = np.stack([np.stack([cos, -sin * flip], -1), np.stack([sin, cos * flip], -1)], -2)
    return matrix.astype(np.float32), shift.astype(np.float32)


def warp_np(images_BxHxWxC: np.ndarray, matrix_Bx2x2: np.ndarray, shift_Bx2: np.ndarray, out_size: int) -> np.ndarray:
    """numpy twin of ``augment._warp`` over a batch: bilinear, edge pixels outside."""
    b, h, w = images_BxHxWxC.shape[:3]
    grid = (np.arange(out_size, dtype=np.float32) + 0.5) / out_size * 2 - 1
    py, px = np.meshgrid(grid, grid, indexing="ij")
    m = matrix_Bx2x2[:, :, :, None, None]
    sy = m[:, 0, 0] * py + m[:, 0, 1] * px + shift_Bx2[:, 0, None, None]
    sx = m[:, 1, 0] * py + m[:, 1, 1] * px + shift_Bx2[:, 1, None, None]
    ys = (sy + 1) / 2 * h - 0.5
    xs = (sx + 1) / 2 * w - 0.5
    y0 = np.floor(ys)
    x0 = np.floor(xs)
    wy = (ys - y0)[..., None]
    wx = (xs - x0)[..., None]
    # Both taps clip from the unclipped floor: a coordinate just below 0 (the identity map
    # gives -1e-6 at the first row) reads row 0 twice, not rows 0 and 1.
    y0i = np.clip(y0.astype(np.int32), 0, h - 1)
    x0i = np.clip(x0.astype(np.int32), 0, w - 1)
    y1i = np.clip(y0.astype(np.int32) + 1, 0, h - 1)
    x1i = np.clip(x0.astype(np.int32) + 1, 0, w - 1)
    bi = np.arange(b)[:, None, None]
    img = images_BxHxWxC.astype(np.float32)
    top = img[bi, y0i, x0i] * (1 - wx) + img[bi, y0i, x1i] * wx
    bottom = img[bi, y1i, x0i] * (1 - wx) + img[bi, y1i, x1i] * wx
    return top * (1 - wy) + bottom * wy


def normalize_np(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    x = (images / 255.0 - mean) / std
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x.astype(np.float32)


class _TrainBatches:
    """Step -> augmented batch; a picklable callable for Grain's worker processes."""

    def __init__(self, split: Split, order: TrainOrder, data_config, seed: int, rows: slice):
        self.rows = rows
        self.images = split.images
        self.labels = split.labels.astype(np.int32)
        self.targets = None if split.targets is None else split.targets.astype(np.float32)
        self.order = order
        self.augment_config = data_config.augment.to_dict()
        self.image_size = data_config.image_size
        self.mean, self.std = data_config.normalize_mean, data_config.normalize_std
        self.seed = seed

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        idx = self.order.indices(int(step))
        rng = np.random.default_rng([self.seed, 1, int(step)])
        cfg = _Attrs(self.augment_config)
        # Drawn for the whole global batch, then cut, so a row's augmentation does not
        # depend on how many processes share the batch.
        matrix, shift = random_affine_np(rng, len(idx), cfg)
        idx, matrix, shift = idx[self.rows], matrix[self.rows], shift[self.rows]
        images = warp_np(self.images[idx], matrix, shift, self.image_size)
        batch = {"image": normalize_np(images, self.mean, self.std), "label": self.labels[idx]}
        if self.targets is not None:
            batch["target"] = self.targets[idx]
        return batch


class _Attrs:
    def __init__(self, d: dict):
        self.__dict__.update(d)


def train_iterator(
    split: Split,
    order: TrainOrder,
    data_config,
    seed: int,
    total_steps: int,
    workers: int,
    rows: slice = slice(None),
):
    """A Grain iterator over the batches of steps 0..total_steps-1 (``get_state``/``set_state`` resume it).

    ``rows``: the rows of each global batch that this process builds (default all).
    """
    dataset = grain.MapDataset.range(total_steps).map(_TrainBatches(split, order, data_config, seed, rows))
    # A few batches of read-ahead: Grain's default buffer (hundreds of elements) would
    # hold gigabytes of 224x224 float batches.
    iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    if workers > 0:
        from absl import flags

        # Grain's workers read absl flags; outside an absl app (tests, notebooks) none were parsed.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(iter_dataset)
