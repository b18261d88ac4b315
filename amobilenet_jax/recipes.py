"""The recipes configs/ builds on, and the helpers that build a study's points.

Each recipe starts from ``config.base_config`` and sets the fields it changes; each of those
fields defaults to the paper's value, so a recipe reads as its list of changes. A study's
``get_sweep`` lists its points with ``product``, ``with_seeds`` and ``seeds_first``. This module
is on the ground floor: a config file imports nothing from the training floor.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from amobilenet_jax.config import base_config

SEED_KEY = "seed"


def _format_value(value: Any) -> str:
    """A value in a run directory's name: a list joined by ``-``, a path by its last part (no ``/``)."""
    if isinstance(value, (tuple, list)):
        return "-".join(_format_value(v) for v in value)
    return os.path.basename(os.path.normpath(value)) if isinstance(value, str) and "/" in value else str(value)


def point_name(overrides: dict[str, Any]) -> str:
    """``cbam=False,seed=1``: the last part of each key, unless two keys share it."""
    leaves = [key.rsplit(".", 1)[-1] for key in overrides]
    names = [leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(overrides, leaves)]
    return ",".join(f"{name}={_format_value(v)}" for name, v in zip(names, overrides.values()))


def group_key(overrides: dict[str, Any]) -> dict[str, Any]:
    """The point's overrides without the seed: points equal here are one table row."""
    return {k: v for k, v in overrides.items() if k != SEED_KEY}


def product(axes: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def with_seeds(points: list[dict[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    return [{**point, SEED_KEY: seed} for point in points for seed in seeds]


def seeds_first(points: list[dict[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """``with_seeds`` in the other order: every point's first seed before any point's second, so
    that a long study interrupted part-way has one seed of every point rather than all of one."""
    return [{**point, SEED_KEY: seed} for seed in seeds for point in points]


def paper_recipe(dataset: str = "ferplus") -> ml_collections.ConfigDict:
    """Section 3.1: A-MobileNet at 224x224, Adam 1e-4 with Keras decay 1e-5, batch 64,
    100 epochs, dropout 0.5, softmax + center loss, minority classes oversampled."""
    c = base_config()
    c.model.name = "amobilenet"
    c.data.name = dataset
    c.data.image_size = 224
    c.data.balance = "oversample"
    c.loss.center_weight = 0.01
    c.loss.center_update_rate = 0.5
    c.optimizer.learning_rate = 1e-4
    c.optimizer.decay = 1e-5
    c.train.batch_size = 64
    c.train.num_epochs = 100
    c.train.log_every_steps = 100
    c.train.checkpoint_every_steps = 2000
    return c


def synthetic_study(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a config to a CPU-minutes point on the synthetic faces (the quickstart's
    scale): width 0.25, 48x48, 6,000 training images, 6 epochs."""
    c.model.width = 0.25
    c.data.name = "synthetic"
    c.data.image_size = 48
    c.data.num_train = 6000
    c.data.num_test = 2000
    c.data.difficulty = 0.75
    c.data.balance = "none"
    c.data.augment.rotation = 10.0
    c.data.augment.crop = 0.1
    c.data.augment.translate = 0.05
    c.optimizer.learning_rate = 3e-3
    c.optimizer.decay = 2e-3
    c.train.num_epochs = 6
    c.train.log_every_steps = 100
    c.train.checkpoint_every_steps = 500
    c.train.eval_every_epochs = 6
    return c


# A 4-block A-MobileNet body with CBAM after blocks 2 and 4: the structure of the paper's (stride-1
# and stride-2 blocks, CBAM at two resolutions) at about a third of its compile time, for checks
# of a few steps (configs/quickstart.py:tiny, runlocal).
SMALL_BODY = {"blocks": ((64, 1), (128, 2), (256, 2), (1024, 2)), "cbam_blocks": (2, 4)}


def runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a paper-recipe config to a CPU check: a few steps, 48x48, width 0.25, the
    4-block body (``SMALL_BODY``)."""
    c.model.width = 0.25
    c.model.update(SMALL_BODY)
    c.data.image_size = 48
    c.optimizer.learning_rate = 1e-3
    c.train.batch_size = 32
    c.train.num_steps = 20
    c.train.log_every_steps = 5
    c.train.checkpoint_every_steps = 10
    return c


def ferplus_cpu_recipe() -> ml_collections.ConfigDict:
    """A-MobileNet (full width) on real FERPlus, sized for a 2-core CPU.

    Every change from ``paper_recipe`` is a config field whose default is the paper's
    value; experiments/ferplus_cpu/README.md records what each one measured.
    """
    c = paper_recipe("ferplus")
    c.data.image_size = 48  # FER2013's native size: no upsampling (the paper: 224)
    c.model.stem_stride = 1  # keep 48x48 through the stem (the paper: 2, made for 224x224)
    c.data.label_mode = "distribution"  # the FER+ vote distributions as targets (the paper: majority)
    c.data.balance = "none"  # the paper oversamples the minority classes
    c.optimizer.learning_rate = 1e-3  # the paper: 1e-4 with Keras decay 1e-5
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 400
    c.loss.label_smoothing = 0.1
    c.eval_flip = True
    c.train.num_epochs = 17  # the paper: 100
    c.train.log_every_steps = 100
    c.train.checkpoint_every_steps = 1000
    return c


def cpu_study(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks the CPU recipe to a short study point on real FERPlus: the paper's stem stride 2
    (a quarter of the pixels in every later layer) and 4 epochs, evaluated once."""
    c.model.stem_stride = None  # the architecture's own (2), so baselines:cpu runs V2/V3 too
    c.optimizer.warmup_steps = 200
    c.train.num_epochs = 4
    c.train.eval_every_epochs = 4
    c.train.checkpoint_every_steps = 500
    return c


def converged_study(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The CPU recipe at the paper's stem stride 2, trained until its Valid curve is flat: run A
    of experiments/ferplus_cpu/README.md (stride 2, cosine over 36 epochs) was within a point of
    its final accuracy from epoch 24 on, so 24 epochs anneal the same cosine fully. Valid is read
    every 2 epochs for the curves."""
    c.model.stem_stride = None  # the architecture's own (2), as in :cpu, so baselines run V2/V3 too
    c.train.num_epochs = 24
    c.train.eval_every_epochs = 2
    c.train.checkpoint_every_steps = 1000
    return c


STUDY_VARIANTS = ("synthetic", "cpu", "converged")


def study_config(variant: str | None, config_file: str) -> ml_collections.ConfigDict:
    """Base config of an ablation study: the FERPlus paper recipe; ``:cpu`` the same study
    on real FERPlus at CPU scale (``cpu_study``); ``:synthetic`` on the synthetic faces."""
    if variant not in (None, *STUDY_VARIANTS):
        raise ValueError(f"unknown variant {variant!r} of {config_file} (known: {', '.join(STUDY_VARIANTS)})")
    if variant == "cpu":
        return cpu_study(ferplus_cpu_recipe())
    if variant == "converged":
        return converged_study(ferplus_cpu_recipe())
    c = paper_recipe("ferplus")
    return synthetic_study(c) if variant == "synthetic" else c
