"""A study's statistics (amobilenet_jax/statistics.py): intervals against hand-computed ones, verdicts."""

import math

import pytest

from amobilenet_jax import statistics


def test_paired_interval_is_the_t_interval_of_the_per_seed_differences():
    reference = {0: 0.80, 1: 0.82, 2: 0.81}
    row = {0: 0.77, 1: 0.80, 2: 0.78}  # differences -0.03, -0.02, -0.03
    d = statistics.compare(row, reference)
    mean = -0.08 / 3
    sd = math.sqrt(((-0.03 - mean) ** 2 * 2 + (-0.02 - mean) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert (d.mean, d.low, d.high) == pytest.approx((mean, mean - half, mean + half))
    assert d.test == "paired t" and d.seeds == 3 and d.verdict == "holds"
    assert statistics.describe(d) == f"{100 * mean:+.2f} [{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]"


def test_verdicts():
    reference = {0: 0.80, 1: 0.80, 2: 0.80}
    assert statistics.compare({0: 0.83, 1: 0.84, 2: 0.83}, reference).verdict == "does not hold"
    assert statistics.compare({0: 0.78, 1: 0.83, 2: 0.80}, reference).verdict == "cannot tell at 3 seeds"
    assert statistics.compare({0: 0.5}, {0: 0.6}) is None  # one seed: no interval


def test_rows_without_common_seeds_use_welchs_interval():
    d = statistics.compare({0: 0.70, 1: 0.72}, {5: 0.80, 6: 0.81, 7: 0.82})
    assert d.test == "Welch t" and d.mean == pytest.approx(0.71 - 0.81) and d.verdict == "holds"
    assert d.low < d.mean < d.high
