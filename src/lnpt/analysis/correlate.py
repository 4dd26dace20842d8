"""Pearson, Spearman and Kendall correlations, in numpy, tie-aware (docs/learning-gap.md).

The claim under test ("test accuracy tracks the learning gap, not the weight distance") is a
statement about correlations over a handful of points (epochs of one run, or a few pruned
networks), where ties are common (accuracy plateaus, equal sparsities) and a series may be
constant (a collapsed network stuck at 10%). So: Spearman uses average ranks, Kendall is tau-b,
and a correlation that is undefined comes back as NaN *with a reason* instead of raising or
silently printing ``nan``. Written against numpy so the numbers do not depend on a SciPy
version; the tests check them against ``scipy.stats``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

METHODS = ("pearson", "spearman", "kendall")


@dataclass(frozen=True)
class Correlation:
    """A coefficient, the number of finite pairs it used, and why it is NaN when it is."""

    value: float
    n: int
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"value": None if math.isnan(self.value) else self.value, "n": self.n, "reason": self.reason}


def rankdata(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks starting at 1; tied values share the average of the ranks they span."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Boundaries of runs of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(len(a), dtype=float)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _paired(x: Sequence[float], y: Sequence[float], min_points: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Finite pairs only (a metric may be NaN at some epochs, e.g. ``gap_raw`` without an adapter)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correlation needs two 1-d series of equal length, got shapes {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < min_points:
        return a, b, f"only {len(a)} finite pair(s); need at least {min_points}"
    if np.all(a == a[0]):
        return a, b, "first series is constant"
    if np.all(b == b[0]):
        return a, b, "second series is constant"
    return a, b, None


def _pearson_values(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return float(np.clip(np.dot(da, db) / denom, -1.0, 1.0))


def pearson(x: Sequence[float], y: Sequence[float], min_points: int = 3) -> Correlation:
    """Linear correlation coefficient."""
    a, b, reason = _paired(x, y, min_points)
    if reason:
        return Correlation(float("nan"), len(a), reason)
    return Correlation(_pearson_values(a, b), len(a))


def spearman(x: Sequence[float], y: Sequence[float], min_points: int = 3) -> Correlation:
    """Pearson correlation of average ranks (monotone agreement, robust to the scale)."""
    a, b, reason = _paired(x, y, min_points)
    if reason:
        return Correlation(float("nan"), len(a), reason)
    return Correlation(_pearson_values(rankdata(a), rankdata(b)), len(a))


def kendall(x: Sequence[float], y: Sequence[float], min_points: int = 3) -> Correlation:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)).

    O(n^2) memory and time over pairs, which is fine for epochs and runs (hundreds of points).
    """
    a, b, reason = _paired(x, y, min_points)
    if reason:
        return Correlation(float("nan"), len(a), reason)
    iu = np.triu_indices(len(a), k=1)
    sa = np.sign(a[:, None] - a[None, :])[iu]
    sb = np.sign(b[:, None] - b[None, :])[iu]
    s = float(np.sum(sa * sb))
    n0 = len(sa)
    ties_a = float(np.sum(sa == 0))
    ties_b = float(np.sum(sb == 0))
    denom = math.sqrt((n0 - ties_a) * (n0 - ties_b))
    return Correlation(float(np.clip(s / denom, -1.0, 1.0)), len(a))


def correlate(x: Sequence[float], y: Sequence[float], min_points: int = 3) -> dict[str, Correlation]:
    """All three coefficients of ``x`` against ``y``, keyed by method name.

    ``min_points`` defaults to 3 because two points always correlate perfectly (+-1), which
    would read as evidence when it is none.
    """
    return {"pearson": pearson(x, y, min_points), "spearman": spearman(x, y, min_points),
            "kendall": kendall(x, y, min_points)}
