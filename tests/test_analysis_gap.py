"""Reading run directories and `lnpt gap` end to end on synthetic runs (files written here)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lnpt.analysis.gap_report import across_runs, along_training
from lnpt.analysis.runs import (
    RunDirError,
    load_run,
    load_runs,
    prune_layers,
    run_labels,
)
from lnpt.cli import main


def write_run(d: Path, criterion: str, seed: int, acc: list[float], gap: list[float], wd: list[float]) -> Path:
    """A run directory in the format `lnpt run` writes (only the files analysis reads)."""
    d.mkdir(parents=True)
    cfg = {"data": {"dataset": "digits"}, "model": {"model": "lenet5", "width": 1.0},
           "teacher": {"teacher": "shipped"}, "prune": {"criterion": criterion, "sparsity": 0.9},
           "train": {"loss": "lnpt", "epochs": len(acc)}, "seed": seed}
    (d / "config.json").write_text(json.dumps(cfg))
    with open(d / "metrics.jsonl", "w") as f:
        for e, (a, g, w) in enumerate(zip(acc, gap, wd)):
            f.write(json.dumps({"epoch": e + 1, "lr": 0.05, "epoch_seconds": 1.0, "train_loss": g,
                                "train_acc": a, "test_acc": a, "teacher_agreement": a + 0.02, "gap": g,
                                "gap_raw": 10 * g, "weight_distance": w, "weight_distance_rel": w / 10}) + "\n")
    (d / "summary.json").write_text(json.dumps({"final_acc": acc[-1], "best_acc": max(acc), "criterion": criterion,
                                                "loss": "lnpt", "model": "lenet5", "seed": seed, "sparsity": 0.9}))
    return d


# Accuracy plateaus while the weight distance keeps growing: "weight escape".
ACC = [0.50, 0.70, 0.80, 0.84, 0.85, 0.85, 0.85]
GAP = [2.00, 1.20, 0.80, 0.60, 0.55, 0.55, 0.55]
WD = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    out = []
    for i, crit in enumerate(["lnpt", "snip", "random", "magnitude"]):
        drop = 0.1 * i
        out.append(write_run(tmp_path / f"run{i}", crit, 0, [a - drop for a in ACC],
                             [g + 0.5 * i for g in GAP], [w * (1 + 0.05 * (i % 2)) for w in WD]))
    return out


def test_load_run_reads_history_and_settings(runs: list[Path]) -> None:
    run = load_run(runs[1])
    assert len(run.history) == len(ACC)
    assert run.setting("criterion") == "snip" and run.setting("seed") == 0
    np.testing.assert_allclose(run.series("test_acc"), np.array(ACC) - 0.1)
    assert run.final("gap") == pytest.approx(GAP[-1] + 0.5)
    assert run.at_epoch("weight_distance", 2) == pytest.approx(2.1)
    assert math.isnan(run.at_epoch("gap", 99))
    assert run_labels(load_runs(runs[:2])) == ["criterion=lnpt", "criterion=snip"]


def test_missing_metrics_names_the_run_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"empty has no metrics.jsonl"):
        load_run(tmp_path / "empty")


def test_cli_reports_missing_metrics_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notarun").mkdir()
    assert main(["gap", str(tmp_path / "notarun"), "--out", str(tmp_path / "o")]) == 2
    assert "notarun has no metrics.jsonl" in capsys.readouterr().err


def test_truncated_last_line_is_dropped_but_broken_middle_line_is_an_error(runs: list[Path]) -> None:
    path = runs[0] / "metrics.jsonl"
    path.write_text(path.read_text() + '{"epoch": 8, "test_a')
    assert len(load_run(runs[0]).history) == len(ACC)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{oops", *lines[1:-1]]) + "\n")
    with pytest.raises(RunDirError, match="line 2"):
        load_run(runs[0])


def test_along_training_matches_scipy(runs: list[Path]) -> None:
    corr = along_training(load_run(runs[0]))
    assert corr["gap"]["spearman"]["value"] == pytest.approx(stats.spearmanr(GAP, ACC).statistic)
    assert corr["weight_distance"]["kendall"]["value"] == pytest.approx(stats.kendalltau(WD, ACC).statistic)
    assert corr["gap"]["pearson"]["value"] == pytest.approx(stats.pearsonr(GAP, ACC).statistic)
    # The gap tracks accuracy (all ties shared); the weight distance does not see the plateau.
    assert abs(corr["gap"]["kendall"]["value"]) > abs(corr["weight_distance"]["kendall"]["value"])


def test_across_runs_final_and_early(runs: list[Path]) -> None:
    loaded = load_runs(runs)
    res = across_runs(loaded, early_epoch=2)
    finals = [ACC[-1] - 0.1 * i for i in range(4)]
    early_gap = [GAP[1] + 0.5 * i for i in range(4)]
    assert res["early"]["gap"]["pearson"]["value"] == pytest.approx(stats.pearsonr(early_gap, finals).statistic)
    assert res["final"]["gap"]["spearman"]["value"] == pytest.approx(-1.0)
    assert res["points"][2]["epoch2_gap"] == pytest.approx(GAP[1] + 1.0)
    # recorded for benchmarks/plan_agreement.py's stall check; a metric the runs never logged is None
    assert res["points"][2]["epoch2_teacher_agreement"] == pytest.approx(ACC[1] - 0.2 + 0.02)
    assert res["points"][2]["epoch2_heldout_agreement"] is None


def test_gap_cli_writes_report_and_non_blank_figures(runs: list[Path], tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / "report"
    assert main(["gap", *map(str, runs), "--out", str(out), "--early-epoch", "1"]) == 0
    result = json.loads((out / "gap.json").read_text())
    assert len(result["runs"]) == 4
    assert result["across_runs"]["final"]["gap"]["spearman"]["value"] == pytest.approx(-1.0)
    md = (out / "gap.md").read_text()
    assert "![weight escape](weight_escape.png)" in md and "![gap vs accuracy](gap_vs_accuracy.png)" in md
    assert "criterion=snip" in md
    for stem in ("weight_escape", "gap_vs_accuracy"):
        assert (out / f"{stem}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
        img = mpimg.imread(out / f"{stem}.png")
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
        assert img[..., :3].var() > 0
        colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert len(colours) > 20  # lines in several colours, text, grid: not a blank canvas
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_gap_handles_a_single_run_without_crashing(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "one"
    assert main(["gap", str(runs[0]), "--out", str(out)]) == 0
    result = json.loads((out / "gap.json").read_text())
    final = result["across_runs"]["final"]["gap"]["pearson"]
    assert final["value"] is None and "need at least 3" in final["reason"]
    assert "n/a (only 1 finite pair(s)" in (out / "gap.md").read_text()


def test_prune_layers_reads_both_layouts() -> None:
    as_list = {"layers": [{"name": "fc.weight", "size": 10, "kept": 4, "kept_fraction": 0.4}]}
    as_map = {"layers": {"fc.weight": {"kept": 4, "total": 10}}}
    assert prune_layers(as_list) == prune_layers(as_map) == {"fc.weight": {"kept": 4, "total": 10, "kept_fraction": 0.4}}
    assert prune_layers(None) == {}


def test_a_sweep_directory_stands_for_its_runs(runs: list[Path]) -> None:
    sweep = runs[0].parent
    (sweep / "report").mkdir()  # not a run: ignored
    assert [r.name for r in load_runs([sweep], expand_sweeps=True)] == ["run0", "run1", "run2", "run3"]
    with pytest.raises(RunDirError, match="a sweep"):
        load_runs([sweep])
