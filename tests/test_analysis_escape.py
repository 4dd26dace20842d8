"""Weight escape measured on runs written here: a plateau is found where accuracy stops
improving, W's growth after it is measured, and correlations are taken over the right epochs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lnpt.analysis.escape import escape_markdown, escape_table, find_plateau, measure_escape
from lnpt.analysis.runs import load_run

from test_analysis_gap import write_run


def _run(tmp_path: Path, name: str, acc: list[float], gap: list[float], wd: list[float]):
    return load_run(write_run(tmp_path / name, "lnpt", 0, acc, gap, wd))


def test_plateau_is_the_first_epoch_nothing_later_beats():
    acc = np.array([0.5, 0.7, 0.8, 0.84, 0.85, 0.852, 0.849, 0.851, 0.85, 0.853])
    p = find_plateau(acc, tolerance=0.005, min_epochs=3)
    assert p.epoch == 5 and p.accuracy == pytest.approx(0.85) and p.epochs_on_plateau == 5
    # still improving at the end: no plateau
    assert find_plateau(np.linspace(0.5, 0.9, 12), tolerance=0.005, min_epochs=3).epoch is None
    # evaluation gaps (NaN) are skipped, epochs stay 1-based positions
    acc_nan = np.array([0.5, np.nan, 0.8, np.nan, 0.85, 0.85, 0.85, 0.85])
    assert find_plateau(acc_nan, tolerance=0.005, min_epochs=3).epoch == 5


def test_escape_when_w_grows_on_the_plateau(tmp_path):
    acc = [0.5, 0.7, 0.8, 0.85, 0.85, 0.851, 0.85, 0.849, 0.85, 0.85]
    gap = [2.0, 1.2, 0.8, 0.6, 0.6, 0.59, 0.6, 0.61, 0.6, 0.6]
    wd = [1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0]
    e = measure_escape(_run(tmp_path, "escapes", acc, gap, wd), min_epochs=3)
    assert e.plateau_epoch == 4
    assert e.w_growth_after_plateau == pytest.approx((7.0 - 4.0) / 4.0)
    assert e.w_keeps_growing
    # over the plateau W rises while accuracy does not: no concordance with accuracy
    assert abs(e.kendall_weight_plateau) < 0.5
    assert e.spearman_weight > 0.5 and e.spearman_gap < -0.5


def test_no_escape_when_w_stops_with_accuracy(tmp_path):
    acc = [0.5, 0.7, 0.8, 0.85, 0.85, 0.851, 0.85, 0.849, 0.85, 0.85]
    gap = [2.0, 1.2, 0.8, 0.6, 0.6, 0.59, 0.6, 0.61, 0.6, 0.6]
    wd = [1.0, 2.0, 3.0, 4.0, 4.01, 4.0, 4.02, 4.01, 4.0, 4.01]
    e = measure_escape(_run(tmp_path, "settles", acc, gap, wd), min_epochs=3)
    assert e.plateau_epoch == 4 and not e.w_keeps_growing
    assert e.w_growth_after_plateau == pytest.approx(0.0025, abs=1e-6)


def test_table_and_markdown_say_n_a_without_plateau(tmp_path):
    acc = list(np.linspace(0.5, 0.9, 8))
    run = _run(tmp_path, "rising", acc, list(np.linspace(2, 0.5, 8)), list(np.linspace(1, 8, 8)))
    rows = escape_table([run], ["rising"], min_epochs=3)
    assert rows[0]["plateau_epoch"] is None and rows[0]["kendall_weight_plateau"] is None
    assert not rows[0]["w_keeps_growing"]
    text = escape_markdown(rows)
    assert "| rising | 8 | n/a |" in text and not math.isnan(rows[0]["spearman_gap"])
