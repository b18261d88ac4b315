"""A study's statistics: how each row differs from the paper's model, with a 95% interval and a verdict.

Rows are compared with the study's reference row (the paper's model) on accuracy, seed by seed
where both rows ran the same seeds. Points that share a seed share their data order and
augmentation and dropout randomness (all follow from the seed), and their initialisation
wherever their parameters have the same shapes, so the differences are paired: the interval is
the paired t-interval of the per-seed differences. Rows without common seeds fall back to
Welch's interval for two independent samples.

The verdict reads the claim "the paper's model is more accurate than this row":

- ``holds``: the whole interval is below zero (the row is less accurate than the paper's model);
- ``does not hold``: the whole interval is above zero (the row is more accurate);
- ``cannot tell at N seeds``: the interval contains zero.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Difference:
    """``row - reference`` in accuracy (fractions, not points), with its interval and verdict."""

    mean: float
    low: float
    high: float
    seeds: int
    test: str  # "paired t" or "Welch t"
    verdict: str


def _t_quantile(dof: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof))


def compare(row: dict[int, float], reference: dict[int, float]) -> Difference | None:
    """``row`` against ``reference``, each ``{seed: accuracy}``; None when either has under two seeds
    (no interval can be given)."""
    common = sorted(set(row) & set(reference))
    if len(common) >= 2:
        diffs = np.array([row[s] - reference[s] for s in common], np.float64)
        mean, n = float(diffs.mean()), len(diffs)
        half = _t_quantile(n - 1) * float(diffs.std(ddof=1)) / math.sqrt(n)
        return _verdict(mean, mean - half, mean + half, n, "paired t")
    a = np.array(list(row.values()), np.float64)
    b = np.array(list(reference.values()), np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    mean = float(a.mean() - b.mean())
    if va + vb == 0:
        return _verdict(mean, mean, mean, min(len(a), len(b)), "Welch t")
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = _t_quantile(dof) * math.sqrt(va + vb)
    return _verdict(mean, mean - half, mean + half, min(len(a), len(b)), "Welch t")


def _verdict(mean: float, low: float, high: float, seeds: int, test: str) -> Difference:
    if high < 0:
        verdict = "holds"
    elif low > 0:
        verdict = "does not hold"
    else:
        verdict = f"cannot tell at {seeds} seeds"
    return Difference(mean, low, high, seeds, test, verdict)


def describe(difference: Difference | None) -> str:
    """``-2.31 [-4.02, -0.60]`` in accuracy points, or ``–`` when there is no interval."""
    if difference is None:
        return "–"
    d = difference
    return f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def seeds_table(runs: Sequence[dict]) -> dict[int, float]:
    """``{seed: accuracy}`` of a row's runs (each with ``seed`` and ``accuracy``)."""
    return {int(r["seed"]): float(r["accuracy"]) for r in runs if r.get("seed") is not None}
