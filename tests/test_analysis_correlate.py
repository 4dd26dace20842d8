"""Our numpy correlations against scipy.stats, ties included, and NaN-with-a-reason cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lnpt.analysis.correlate import correlate, kendall, pearson, rankdata, spearman

CASES = {
    "no ties": ([0.1, 0.5, 0.3, 0.9, 0.7, 0.2], [1.0, 3.0, 2.5, 4.0, 5.0, 0.5]),
    "ties in both": ([1, 2, 2, 3, 3, 3, 4, 5], [2, 1, 1, 4, 3, 4, 5, 5]),
    "accuracy plateau": ([0.5, 0.7, 0.8, 0.85, 0.85, 0.85, 0.85], [3.0, 2.0, 1.5, 1.2, 1.1, 1.0, 1.0]),
    "negative": ([1, 2, 3, 4, 5], [10, 8, 8, 3, 1]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_scipy(name: str) -> None:
    x, y = CASES[name]
    assert pearson(x, y).value == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert spearman(x, y).value == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall(x, y).value == pytest.approx(stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)


def test_random_data_with_many_ties_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 60).astype(float)
    y = x + rng.integers(0, 3, 60)
    assert kendall(x, y).value == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman(x, y).value == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_rankdata_averages_ties() -> None:
    np.testing.assert_array_equal(rankdata([10, 20, 20, 5]), [2.0, 3.5, 3.5, 1.0])
    np.testing.assert_array_equal(rankdata([3, 1, 2]), stats.rankdata([3, 1, 2]))


def test_constant_input_is_nan_with_reason() -> None:
    for c in correlate([0.1, 0.1, 0.1, 0.1], [1, 2, 3, 4]).values():
        assert math.isnan(c.value)
        assert c.reason == "first series is constant"
    c = kendall([1, 2, 3], [5, 5, 5])
    assert math.isnan(c.value) and c.reason == "second series is constant"
    assert c.to_dict()["value"] is None  # JSON-safe


def test_nan_pairs_dropped_and_too_few_points_reported() -> None:
    x = [1.0, 2.0, float("nan"), 4.0, 5.0]
    y = [2.0, 4.0, 6.0, float("nan"), 10.0]
    c = pearson(x, y)
    assert c.n == 3 and c.value == pytest.approx(1.0)
    short = spearman([1, 2], [3, 4])
    assert math.isnan(short.value) and "need at least 3" in short.reason and short.n == 2


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="equal length"):
        pearson([1, 2, 3], [1, 2])
