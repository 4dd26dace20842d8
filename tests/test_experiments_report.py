"""`lnpt report` on a tiny synthetic sweep: numbers against hand computations, figures not blank."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lnpt.cli import main
from lnpt.config import RunConfig, to_dict
from lnpt.experiments.grid import sweep_from_dict
from lnpt.experiments.report import collect, group_rows, loss_comparison, mean_std
from lnpt.experiments.sweep import run_sweep

# Final accuracy per (criterion, sparsity, loss) for seeds 0, 1, 2.
ACC = {
    ("lnpt", 0.9, "lnpt"): [0.90, 0.92, 0.91],
    ("lnpt", 0.9, "supervised"): [0.93, 0.94, 0.95],
    ("lnpt", 0.95, "lnpt"): [0.85, 0.80, 0.84],
    ("lnpt", 0.95, "supervised"): [0.86, 0.86, 0.89],
    ("snip", 0.9, "lnpt"): [0.88, 0.89, 0.90],
    ("snip", 0.9, "supervised"): [0.91, 0.90, 0.92],
    ("snip", 0.95, "lnpt"): [0.70, 0.75, 0.71],
    ("snip", 0.95, "supervised"): [0.72, 0.74, 0.79],
}
LAYERS = {"conv1.weight": 150, "conv2.weight": 2400, "fc1.weight": 48000}


def runner(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """Writes the run files of `lnpt run` with the accuracies of ``ACC``."""
    out.mkdir(parents=True, exist_ok=True)
    acc = ACC[(cfg.prune.criterion, cfg.weights.sparsity, cfg.train.loss)][cfg.seed]
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))
    # snip keeps more of conv1 than lnpt does; the counts do not depend on the loss (same mask).
    share = {"lnpt": [0.5, 0.2, 0.05], "snip": [0.9, 0.1, 0.04]}[cfg.prune.criterion]
    # The list layout of lnpt.pruning.report (the sweep tests use the mapping layout).
    layers = [{"name": k, "kept": int(n * f * (1.0 - cfg.weights.sparsity) * 10), "size": n,
               "kept_fraction": f * (1.0 - cfg.weights.sparsity) * 10} for (k, n), f in zip(LAYERS.items(), share)]
    (out / "prune_report.json").write_text(json.dumps({"sparsity": cfg.weights.sparsity, "layers": layers,
                                                       "seconds": 0.25 if cfg.prune.criterion == "lnpt" else 0.5}))
    (out / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "test_acc": acc - 0.05 * (2 - e), "gap": 1 - acc, "weight_distance": e}) + "\n"
        for e in (1, 2)))
    summary = {"final_acc": acc, "best_acc": acc + 0.005, "sparsity": cfg.weights.sparsity - 1e-4, "params": 1,
               "macs": 1, "seconds": 10.0 + cfg.seed, "train_seconds": 8.0, "criterion": cfg.prune.criterion, "loss": cfg.train.loss,
               "model": cfg.model.model, "seed": cfg.seed}
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    spec = sweep_from_dict({"grid": {"criterion": ["lnpt", "snip"], "sparsity": [0.9, 0.95],
                                     "loss": ["lnpt", "supervised"], "seed": [0, 1, 2]}})
    result = run_sweep(spec, d, runner=runner, progress=False, log=lambda s: None)
    assert len(result.names("done")) == 24
    return d


def test_mean_std_is_sample_std() -> None:
    m, s = mean_std([0.85, 0.80, 0.84])
    assert m == pytest.approx(0.83) and s == pytest.approx(math.sqrt(((0.02) ** 2 + 0.03 ** 2 + 0.01 ** 2) / 2))
    assert math.isnan(mean_std([0.5])[1]) and math.isnan(mean_std([])[0])


def test_group_numbers_equal_hand_computed(sweep_dir: Path) -> None:
    rows, incomplete = collect(sweep_dir)
    assert len(rows) == 24 and incomplete == []
    groups = {(g["criterion"], g["sparsity"], g["loss"]): g for g in group_rows(rows)}
    assert set(groups) == set(ACC)
    for key, accs in ACC.items():
        g = groups[key]
        assert g["n"] == 3 and g["model"] == "lenet5" and g["seeds"] == [0, 1, 2]
        assert g["final_acc_mean"] == pytest.approx(np.mean(accs))
        assert g["final_acc_std"] == pytest.approx(np.std(accs, ddof=1))
        assert g["best_acc_mean"] == pytest.approx(np.mean(accs) + 0.005)
        assert g["seconds_mean"] == pytest.approx(11.0)


def test_loss_comparison_pairs_the_same_mask(sweep_dir: Path) -> None:
    rows, _ = collect(sweep_dir)
    comp = {(r["criterion"], r["sparsity"]): r for r in loss_comparison(rows)}
    r = comp[("snip", 0.95)]
    assert r["lnpt_mean"] == pytest.approx(np.mean([0.70, 0.75, 0.71]))
    assert r["supervised_std"] == pytest.approx(np.std([0.72, 0.74, 0.79], ddof=1))
    assert r["lnpt_minus_supervised"] == pytest.approx(np.mean([0.70, 0.75, 0.71]) - np.mean([0.72, 0.74, 0.79]))
    assert r["masks"] == "same"


def test_report_cli_writes_tables_and_figures(sweep_dir: Path, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / "rep"
    assert main(["report", str(sweep_dir), "--out", str(out)]) == 0
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(ACC)
    row = next(r for r in table if (r["criterion"], r["sparsity"], r["loss"]) == ("lnpt", "0.95", "lnpt"))
    assert float(row["final_acc_mean"]) == pytest.approx(0.83)
    assert float(row["final_acc_std"]) == pytest.approx(np.std([0.85, 0.80, 0.84], ddof=1))
    md = (out / "report.md").read_text()
    # The same numbers, in percent, in the markdown table.
    assert f"| lenet5 | lnpt | 95% | lnpt | 3 | 83.00 ± {100 * np.std([0.85, 0.80, 0.84], ddof=1):.2f} |" in md
    assert "Label-free vs supervised" in md and "lnpt − supervised" in md
    assert "![accuracy vs sparsity](accuracy_vs_sparsity.png)" in md
    wall = list(csv.DictReader(open(out / "wall_times.csv")))
    assert {(w["criterion"], float(w["prune_seconds_mean"])) for w in wall} == {("lnpt", 0.25), ("snip", 0.5)}
    assert all(float(w["train_seconds_mean"]) == 8.0 and float(w["seconds_mean"]) == 11.0 for w in wall)
    report = json.loads((out / "report.json").read_text())
    assert report["total_seconds"] == pytest.approx(24 * 11.0)
    for stem in ("accuracy_vs_sparsity", "kept_fraction"):
        assert (out / f"{stem}.svg").stat().st_size > 1000
        img = mpimg.imread(out / f"{stem}.png")
        assert img[..., :3].var() > 0
        assert len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20


def test_incomplete_and_failed_cells_are_listed(sweep_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    (copy / "criterion=lnpt,sparsity=0.9,loss=lnpt,seed=0" / "summary.json").unlink()
    (copy / "failures.json").write_text(json.dumps({"criterion=x": {"error": "RuntimeError: boom"}}))
    assert main(["report", str(copy)]) == 0
    md = (copy / "report" / "report.md").read_text()
    assert "Unfinished cells" in md and "criterion=lnpt,sparsity=0.9,loss=lnpt,seed=0" in md
    assert "RuntimeError: boom" in md
    groups = json.loads((copy / "report" / "report.json").read_text())["groups"]
    g = next(g for g in groups if (g["criterion"], g["sparsity"], g["loss"]) == ("lnpt", 0.9, "lnpt"))
    assert g["n"] == 2 and g["final_acc_mean"] == pytest.approx(0.915)


def test_report_of_empty_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished cells" in capsys.readouterr().err


def test_kept_fractions_are_read_from_the_prune_report(sweep_dir: Path) -> None:
    rows, _ = collect(sweep_dir)
    r = next(r for r in rows if (r["criterion"], r["sparsity"]) == ("snip", 0.95))
    assert list(r["layers"]) == list(LAYERS)
    assert r["layers"]["conv1.weight"]["kept_fraction"] == pytest.approx(0.45)
    assert r["layers"]["fc1.weight"]["total"] == 48000


# A follow-up sweep: LNPT with layer-wise scope and iterative SNIP, at 95%, loss lnpt.
VARIANT_ACC = {("lnpt", "layer", None): [0.86, 0.79, 0.88], ("snip", "global", 10): [0.72, 0.74, 0.70],
               ("grasp", "layer", None): [0.60, 0.62, 0.61]}


def variant_runner(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    if (cfg.prune.criterion, cfg.weights.scope, cfg.weights.rounds) == ("lnpt", "global", None):
        return runner(cfg, out, resume, progress)
    acc = VARIANT_ACC[(cfg.prune.criterion, cfg.weights.scope, cfg.weights.rounds)][cfg.seed]
    (out).mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))
    (out / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": acc}) + "\n")
    summary = {"final_acc": acc, "best_acc": acc, "sparsity": cfg.weights.sparsity, "seconds": 1.0,
               "criterion": cfg.prune.criterion, "loss": cfg.train.loss, "model": cfg.model.model, "seed": cfg.seed}
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


def test_variants_are_grouped_apart_and_paired_against_a_baseline(sweep_dir: Path, tmp_path: Path) -> None:
    from scipy import stats

    from lnpt.experiments.paired import paired_differences

    follow = tmp_path / "follow"
    # The follow-up repeats one grid cell (lnpt, 95%, seed 0): counted once.
    spec = sweep_from_dict({"prune": {"sparsity": 0.95}, "extra": [{"criterion": "lnpt", "seed": 0}] + [
        {"criterion": "lnpt", "scope": "layer", "seed": s} for s in (0, 1, 2)] + [
        {"criterion": "snip", "rounds": 10, "seed": s} for s in (0, 1, 2)]})
    run_sweep(spec, follow, runner=variant_runner, progress=False, log=lambda s: None)
    rows, _ = collect([sweep_dir, follow])
    groups = {(g["criterion"], g["variant"], g["sparsity"], g["loss"]): g for g in group_rows(rows)}
    # The default lnpt cells and the layer-wise ones are different experiments.
    assert groups[("lnpt", "", 0.95, "lnpt")]["final_acc_mean"] == pytest.approx(np.mean([0.85, 0.80, 0.84]))
    assert groups[("lnpt", "", 0.95, "lnpt")]["n"] == 3
    assert groups[("lnpt", "scope=layer", 0.95, "lnpt")]["final_acc_mean"] == pytest.approx(np.mean([0.86, 0.79, 0.88]))
    assert groups[("snip", "rounds=10", 0.95, "lnpt")]["n"] == 3
    paired = {(r["criterion"], r["variant"], r["sparsity"], r["loss"]): r for r in paired_differences(rows, "snip")}
    assert ("snip", "", 0.95, "lnpt") not in paired  # the baseline itself
    r = paired[("lnpt", "scope=layer", 0.95, "lnpt")]
    diffs = np.array([0.86 - 0.70, 0.79 - 0.75, 0.88 - 0.71])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert r["n"] == 3 and r["wins"] == 3 and r["mean_diff"] == pytest.approx(diffs.mean())
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    r = paired[("snip", "rounds=10", 0.95, "lnpt")]
    assert r["mean_diff"] == pytest.approx(np.mean([0.02, -0.01, -0.01])) and r["wins"] == 1
    # The CLI: several folders, --against, paired.csv and the markdown section.
    out = tmp_path / "rep"
    assert main(["report", str(sweep_dir), str(follow), "--out", str(out), "--against", "snip"]) == 0
    md = (out / "report.md").read_text()
    assert "Paired differences against `snip`" in md and "lnpt [scope=layer]" in md
    assert len(list(csv.DictReader(open(out / "paired.csv")))) == len(paired)
    assert main(["report", str(sweep_dir), "--out", str(out), "--against", "synflow"]) == 2
    # A variant as the baseline, named as the report labels it.
    by_variant = {(r["criterion"], r["variant"]): r for r in paired_differences(rows, "lnpt [scope=layer]")}
    r = by_variant[("snip", "")]
    assert r["mean_diff"] == pytest.approx(-diffs.mean()) and r["against"] == "lnpt [scope=layer]"
    assert ("lnpt", "scope=layer") not in by_variant and ("lnpt", "") in by_variant


def test_against_a_criterion_whose_cells_all_vary_names_the_labels(sweep_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    follow = tmp_path / "follow"
    spec = sweep_from_dict({"prune": {"sparsity": 0.95}, "extra": [
        {"criterion": "grasp", "scope": "layer", "seed": s} for s in (0, 1)]})
    run_sweep(spec, follow, runner=variant_runner, progress=False, log=lambda s: None)
    out = tmp_path / "rep"
    assert main(["report", str(sweep_dir), str(follow), "--out", str(out), "--against", "grasp"]) == 2
    assert "name one of them exactly: 'grasp [scope=layer]'" in capsys.readouterr().err
    assert main(["report", str(sweep_dir), str(follow), "--out", str(out), "--against", "grasp [scope=layer]"]) == 0
    assert (out / "paired.csv").is_file()


def test_channel_pruned_cells_group_by_channel_ratio_and_pair_with_the_baseline() -> None:
    from lnpt.experiments.paired import assign_variants, paired_differences
    from lnpt.experiments.report import channel_amount

    def row(criterion, seed, acc, **extra):
        settings = {"model": "resnet20", "criterion": criterion, "seed": seed, "structured": True,
                    "channel_ratio": 0.5, **extra}
        return {"model": "resnet20", "criterion": criterion, "sparsity": channel_amount(0.5), "loss": "lnpt",
                "seed": seed, "final_acc": acc, "best_acc": acc, "achieved_sparsity": 0.7493, "seconds": 1.0,
                "prune_seconds": 0.1, "train_seconds": 0.5, "settings": settings}

    rows = [row("random", 0, 0.80), row("random", 1, 0.82), row("lnpt-fm", 0, 0.81), row("lnpt-fm", 1, 0.84),
            row("lnpt-fm", 0, 0.79, fm_saliency="sum-abs"), row("lnpt-fm", 1, 0.83, fm_saliency="sum-abs")]
    assign_variants(rows)
    assert {r["variant"] for r in rows} == {"", "fm_saliency=sum-abs"}
    assert rows[0]["sparsity"] == "channels 50%"
    paired = {r["variant"]: r for r in paired_differences(rows, "random")}
    assert paired[""]["mean_diff"] == pytest.approx(0.015)
    assert paired["fm_saliency=sum-abs"]["mean_diff"] == pytest.approx(0.0)
    groups = group_rows(rows)
    assert {g["sparsity"] for g in groups} == {"channels 50%"} and len(groups) == 3


def test_a_folder_written_before_a_setting_existed_is_the_same_experiment() -> None:
    from lnpt.experiments.paired import flat_settings

    new = to_dict(RunConfig())
    old = json.loads(json.dumps(new))
    del old["prune"]["score_bn"], old["teacher"]["teacher_prefetch"]
    assert flat_settings(old) == flat_settings(new)
    assert "teacher_prefetch" not in flat_settings(new)  # operational: never part of an experiment
