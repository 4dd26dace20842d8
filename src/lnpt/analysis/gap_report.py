"""``lnpt gap``: does test accuracy track the learning gap better than the weight distance?

Two views (docs/METHOD.md, "Learning gap and weight distance"):

* along training: within each run, the per-epoch series of every metric is correlated with
  the per-epoch test accuracy;
* across runs: the final (and an early) value of each metric of every run is correlated with
  the final test accuracy of the runs (e.g. one point per criterion x sparsity). The early
  view asks whether the gap *predicts* the outcome after one epoch of training.

The numbers go to ``gap.json``; ``gap.md`` shows them as tables and embeds the figures.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import write_text
from .correlate import METHODS, Correlation, correlate
from .escape import escape_markdown, escape_table
from .figures import gap_scatter_figure, weight_escape_figure
from .runs import Run, run_labels

TRAINING_METRICS = ("gap", "gap_raw", "weight_distance", "weight_distance_rel", "teacher_agreement")
ACROSS_METRICS = ("gap", "gap_raw", "weight_distance", "weight_distance_rel")
#: Also recorded per run (not correlated): how often the student predicts the teacher's class, which
#: benchmarks/plan_agreement.py reads to tell a network that has not started to learn.
AGREEMENT_METRICS = ("teacher_agreement", "heldout_agreement")
TARGET = "test_acc"


def _table(corrs: dict[str, Correlation]) -> dict[str, dict]:
    return {m: c.to_dict() for m, c in corrs.items()}


def along_training(run: Run, metrics: Sequence[str] = TRAINING_METRICS, target: str = TARGET) -> dict[str, dict]:
    """Per metric: Pearson/Spearman/Kendall of its per-epoch series with ``target``.
    Epochs without an evaluation (NaN) are left out pairwise."""
    acc = run.series(target)
    return {m: _table(correlate(run.series(m), acc)) for m in metrics}


def across_runs(runs: list[Run], early_epoch: int = 1, metrics: Sequence[str] = ACROSS_METRICS,
                target: str = TARGET) -> dict[str, dict]:
    """Final and early (after ``early_epoch``) metric values of each run against each run's
    final ``target``. Returns ``{"final": {metric: corr}, "early": {...}, "points": [...]}``."""
    final_acc = [r.final(target) for r in runs]
    out: dict[str, dict] = {"final": {}, "early": {}, "early_epoch": early_epoch}  # type: ignore[dict-item]
    for m in metrics:
        out["final"][m] = _table(correlate([r.final(m) for r in runs], final_acc))
        out["early"][m] = _table(correlate([r.at_epoch(m, early_epoch) for r in runs], final_acc))
    out["points"] = [  # type: ignore[assignment]
        {"run": str(r.path), "final_" + target: _num(a),
         **{f"final_{m}": _num(r.final(m)) for m in metrics},
         **{f"epoch{early_epoch}_{m}": _num(r.at_epoch(m, early_epoch)) for m in (*metrics, *AGREEMENT_METRICS)}}
        for r, a in zip(runs, final_acc)]
    return out


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def gap_analysis(runs: list[Run], early_epoch: int = 1) -> dict:
    """All numbers of the report as a JSON-able dict."""
    labels = run_labels(runs)
    return {
        "target": TARGET,
        "methods": list(METHODS),
        "runs": [{"run": str(r.path), "label": lab, "epochs": len(r.history),
                  "along_training": along_training(r)} for r, lab in zip(runs, labels)],
        "across_runs": across_runs(runs, early_epoch),
        "escape": escape_table(runs, labels),
    }


def write_gap_report(runs: list[Run], out: str | Path, early_epoch: int = 1) -> dict:
    """Write ``gap.json``, ``gap.md`` and the figures (PNG + SVG) into ``out``; return the numbers."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = gap_analysis(runs, early_epoch)
    figures = {
        "weight_escape": weight_escape_figure(runs, out),
        "gap_vs_accuracy": gap_scatter_figure(runs, out),
    }
    result["figures"] = {k: [p.name for p in v] for k, v in figures.items()}
    write_text(out / "gap.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_text(out / "gap.md", render_markdown(result))
    return result


def _cell(c: dict) -> str:
    return f"{c['value']:+.3f}" if c["value"] is not None else f"n/a ({c['reason']})"


def _corr_rows(name: str, corrs: dict[str, dict]) -> str:
    return f"| {name} | " + " | ".join(_cell(corrs[m]) for m in METHODS) + f" | {corrs['pearson']['n']} |"


def _mean_abs_spearman(result: dict, metric: str) -> float:
    vals = [r["along_training"][metric]["spearman"]["value"] for r in result["runs"]]
    vals = [abs(v) for v in vals if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def render_markdown(result: dict) -> str:
    """The human-readable report; every number in it also lives in gap.json."""
    header = "| metric | Pearson | Spearman | Kendall | n |\n|---|---|---|---|---|"
    lines = ["# Learning gap vs weight distance", "",
             "Correlations of each metric with test accuracy (docs/learning-gap.md). A *smaller* learning gap "
             "should mean *higher* accuracy, so the expected sign for `gap` is negative; what matters "
             "is the magnitude compared with `weight_distance`.", ""]
    g, w = _mean_abs_spearman(result, "gap"), _mean_abs_spearman(result, "weight_distance")
    if not (math.isnan(g) or math.isnan(w)):
        verdict = "tracks accuracy more closely than" if g > w else "does not track accuracy more closely than"
        lines += [f"**Along training**, mean |Spearman| over {len(result['runs'])} run(s): learning gap "
                  f"{g:.3f}, weight distance {w:.3f} — the gap {verdict} the weight distance.", ""]
    lines += ["## Figures", "", "![weight escape](weight_escape.png)", "",
              "Weight distance, learning gap and test accuracy per epoch (all runs overlaid).", "",
              "![gap vs accuracy](gap_vs_accuracy.png)", "",
              "Final learning gap and weight distance against final test accuracy, one point per run, "
              "with a least-squares line.", "", "## Along training (per run, per epoch)", ""]
    for r in result["runs"]:
        lines += [f"### {r['label']}", "", f"`{r['run']}` — {r['epochs']} epoch(s)", "", header]
        lines += [_corr_rows(m, c) for m, c in r["along_training"].items()] + [""]
    lines += ["## Weight escape (per run)", "",
              "Plateau: the first epoch after which test accuracy never beats its best so far by more "
              "than half a point (at least 5 epochs follow). W keeps growing: it rose on most plateau "
              "epochs and by more than 2% overall. Spearman over all epochs; Kendall over the plateau "
              "epochs only.", "", escape_markdown(result["escape"]), ""]
    across = result["across_runs"]
    lines += ["## Across runs (final test accuracy)", ""]
    for when, title in (("final", "final metric"), ("early", f"metric after epoch {across['early_epoch']}")):
        lines += [f"### {title}", "", header]
        lines += [_corr_rows(m, c) for m, c in across[when].items()] + [""]
    lines += ["Numbers: `gap.json`. Correlations are NaN (n/a) when fewer than 3 finite pairs "
              "exist or a series is constant.", ""]
    return "\n".join(lines)
