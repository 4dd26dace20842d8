"""Weight escape: does the weight distance keep growing after test accuracy has stopped improving?

The paper's claim (docs/METHOD.md, "Learning gap and weight distance") is that W = ||θ_t − θ_0||
keeps growing along directions that no longer change the function, so W cannot tell when a
network has stopped generalising better, while the learning gap G can. Testing it needs runs
long enough to reach a plateau; this module finds the plateau in a run's per-epoch test
accuracy and measures, per run:

- where the plateau starts (the first epoch from which accuracy never again beats its best so
  far by more than ``tolerance``), and how much W and G still change after it;
- the along-training correlations of G and of W with test accuracy: Spearman over all epochs,
  Kendall over the plateau epochs alone (where escape, if any, shows: accuracy flat, W moving).

Every number is computed from ``metrics.jsonl`` alone, so it works on copies of run folders.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .correlate import kendall, spearman
from .runs import Run

TARGET = "test_acc"


@dataclass(frozen=True)
class Plateau:
    """Where accuracy stops improving. ``epoch`` is 1-based (as in metrics.jsonl); None when
    accuracy kept improving up to the last epochs (no plateau of ``min_epochs`` epochs)."""

    epoch: int | None
    accuracy: float
    epochs_on_plateau: int


def find_plateau(acc: np.ndarray, tolerance: float = 0.005, min_epochs: int = 5) -> Plateau:
    """The first epoch after which no later epoch beats the best accuracy seen so far by more
    than ``tolerance`` (absolute, 0.005 = half a point), provided at least ``min_epochs``
    epochs follow on the plateau. Epochs without an evaluation (NaN) are skipped."""
    finite = np.flatnonzero(np.isfinite(acc))
    for k, i in enumerate(finite):
        best = np.max(acc[finite[: k + 1]])
        later = acc[finite[k + 1:]]
        if len(later) >= min_epochs and not np.any(later > best + tolerance):
            return Plateau(int(i) + 1, float(best), int(len(later)))
    return Plateau(None, float(np.nanmax(acc)) if len(finite) else float("nan"), 0)


@dataclass(frozen=True)
class Escape:
    """One run's weight-escape measurements (NaN where a value cannot be had)."""

    run: str
    epochs: int
    plateau_epoch: int | None
    plateau_accuracy: float
    final_accuracy: float
    w_at_plateau: float
    w_final: float
    w_growth_after_plateau: float      # relative: (W_final - W_plateau) / W_plateau
    w_keeps_growing: bool              # W rose on most plateau epochs and by > min_growth overall
    g_at_plateau: float
    g_final: float
    spearman_gap: float                # along all epochs, with test accuracy
    spearman_weight: float
    kendall_gap_plateau: float         # over the plateau epochs only
    kendall_weight_plateau: float

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _value(c) -> float:
    return float("nan") if c.value is None else float(c.value)


def _keeps_growing(w: np.ndarray, min_growth: float) -> bool:
    steps = np.diff(w[np.isfinite(w)])
    if len(steps) == 0 or not np.isfinite(w).any():
        return False
    start = w[np.isfinite(w)][0]
    rising = float(np.mean(steps > 0))
    return rising > 0.5 and (w[np.isfinite(w)][-1] - start) > min_growth * max(abs(start), 1e-12)


def measure_escape(run: Run, tolerance: float = 0.005, min_epochs: int = 5,
                   min_growth: float = 0.02) -> Escape:
    """Plateau, W's growth after it and the correlations of G and W with accuracy for ``run``.
    ``min_growth`` (relative, 2%) is how much W must rise after the plateau to count as
    escaping rather than drifting."""
    acc, g, w = run.series(TARGET), run.series("gap"), run.series("weight_distance")
    plateau = find_plateau(acc, tolerance, min_epochs)
    nan = float("nan")
    if plateau.epoch is None:
        on = np.zeros(len(acc), dtype=bool)
        w_p = g_p = nan
    else:
        on = np.arange(len(acc)) >= plateau.epoch - 1
        w_p, g_p = float(w[plateau.epoch - 1]), float(g[plateau.epoch - 1])
    w_f, g_f = run.final("weight_distance"), run.final("gap")
    growth = (w_f - w_p) / w_p if np.isfinite(w_p) and w_p > 0 else nan
    return Escape(
        run=str(run.path), epochs=len(run.history), plateau_epoch=plateau.epoch,
        plateau_accuracy=plateau.accuracy, final_accuracy=run.final(TARGET),
        w_at_plateau=w_p, w_final=w_f, w_growth_after_plateau=growth,
        w_keeps_growing=bool(on.any() and _keeps_growing(w[on], min_growth)),
        g_at_plateau=g_p, g_final=g_f,
        spearman_gap=_value(spearman(g, acc)), spearman_weight=_value(spearman(w, acc)),
        kendall_gap_plateau=_value(kendall(g[on], acc[on])) if on.any() else nan,
        kendall_weight_plateau=_value(kendall(w[on], acc[on])) if on.any() else nan,
    )


def escape_table(runs: list[Run], labels: list[str], **kwargs: float) -> list[dict]:
    """One row per run: its label and :class:`Escape` numbers, JSON-ready."""
    return [{"label": lab, **measure_escape(r, **kwargs).to_dict()} for r, lab in zip(runs, labels)]


def escape_markdown(rows: list[dict]) -> str:
    """The table for docs/learning-gap.md and ``gap.md``."""
    def f(v, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = ["| run | epochs | plateau from | acc. at plateau → final | W growth after plateau | "
             "W keeps growing | Spearman G / W | Kendall on plateau G / W |",
             "|---|---:|---:|---|---:|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['epochs']} | {f(r['plateau_epoch'], 'd')} | "
            f"{f(r['plateau_accuracy'], '.4f')} → {f(r['final_accuracy'], '.4f')} | "
            f"{f(r['w_growth_after_plateau'], '+.1%')} | {'yes' if r['w_keeps_growing'] else 'no'} | "
            f"{f(r['spearman_gap'], '+.3f')} / {f(r['spearman_weight'], '+.3f')} | "
            f"{f(r['kendall_gap_plateau'], '+.3f')} / {f(r['kendall_weight_plateau'], '+.3f')} |")
    return "\n".join(lines)
