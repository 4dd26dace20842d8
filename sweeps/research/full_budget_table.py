"""The full-budget LeNet-5 tables of docs/RESULTS.md, read from the sweep's run folders through
lnpt's own report code (``lnpt.experiments.report.collect``, ``paired_differences``), so the
numbers are the ones ``lnpt report`` computes. Prints markdown:

* final test accuracy, mean ± sample std over seeds, per criterion x sparsity (LNPT loss);
* per sparsity, LNPT minus every baseline, paired by seed, with the 95% t-interval (the best
  baseline by mean marked), which is what "paired intervals against the best baseline" asks;
* label-free against supervised training on the same masks (paired by seed), and the dense
  reference;
* how much the last five epochs still moved each cell (final minus the best accuracy up to five
  epochs before the end; under a cosine schedule the tail always helps a little);
* with ``--longer DIR``: the same cells trained longer (e.g. 30 epochs), against these.

    python sweeps/research/full_budget_table.py runs/sweeps/fmnist-lenet5-full \
        [--longer runs/sweeps/fmnist-lenet5-epochs]
"""
from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from lnpt.analysis.runs import load_runs
from lnpt.experiments.paired import paired_differences, t_interval
from lnpt.experiments.report import collect, mean_std

CRITERIA = ["lnpt", "snip", "grasp", "synflow", "magnitude", "random"]
COLLAPSED = 0.2  # final accuracy at or below: the network never trained (chance is 0.10)


def _pct(values: list[float]) -> str:
    """Mean ± sample std in percent, and how many of the seeds collapsed to chance."""
    mean, std = mean_std(values)
    n, dead = len(values), sum(v <= COLLAPSED for v in values)
    text = f"{100 * mean:.2f}" + ("" if n == 1 or math.isnan(std) else f" ± {100 * std:.2f}")
    if dead:
        text += " (collapsed)" if n == 1 else f" ({dead}/{n} collapsed)"
    return text


def accuracy_table(rows: list[dict]) -> dict[tuple[float, str], list[float]]:
    cells: dict[tuple[float, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["loss"] == "lnpt" and r["sparsity"] > 0 and r["variant"] == "":
            cells[(r["sparsity"], r["criterion"])].append(r["final_acc"])
    sparsities = sorted({s for s, _ in cells})
    seeds = sorted({len(v) for v in cells.values()})
    print(f"Final test accuracy (%), mean ± sample std over {'/'.join(map(str, seeds))} seeds:\n")
    print("| sparsity | " + " | ".join(CRITERIA) + " |\n|---:|" + "---:|" * len(CRITERIA))
    for s in sparsities:
        means = {c: mean_std(cells.get((s, c), []))[0] for c in CRITERIA}
        top = max(means, key=lambda c: -1 if math.isnan(means[c]) else means[c])
        cols = []
        for c in CRITERIA:
            v = cells.get((s, c), [])
            text = _pct(v) if v else "—"
            cols.append(f"**{text}**" if c == top else text)
        print(f"| {100 * s:.0f}% | " + " | ".join(cols) + " |")
    return cells


def lnpt_against_baselines(rows: list[dict], cells: dict[tuple[float, str], list[float]]) -> None:
    print("\nLNPT minus each baseline, paired by seed (mean, 95% t-interval, seeds the baseline won / "
          "seeds paired); the best baseline by mean in bold:\n")
    print("| sparsity | " + " | ".join(c for c in CRITERIA if c != "lnpt") + " |\n|---:|"
          + "---:|" * (len(CRITERIA) - 1))
    diffs = [d for d in paired_differences([r for r in rows if r["variant"] == ""], "lnpt") if d["loss"] == "lnpt"]
    by = {(d["sparsity"], d["criterion"]): d for d in diffs}
    for s in sorted({d["sparsity"] for d in diffs if d["sparsity"] > 0}):
        means = {c: mean_std(cells.get((s, c), []))[0] for c in CRITERIA if c != "lnpt"}
        best = max(means, key=lambda c: -1 if math.isnan(means[c]) else means[c])
        cols = []
        for c in CRITERIA[1:]:
            d = by.get((s, c))
            if d is None:
                cols.append("—")
                continue
            # paired_differences gives baseline - lnpt; LNPT's margin is its negative
            ci = "" if math.isnan(d["ci_low"]) else f" [{-100 * d['ci_high']:+.2f}, {-100 * d['ci_low']:+.2f}]"
            text = f"{-100 * d['mean_diff']:+.2f}{ci} {d['wins']}/{d['n']}"
            cols.append(f"**{text}**" if c == best else text)
        print(f"| {100 * s:.0f}% | " + " | ".join(cols) + " |")


def loss_and_dense(rows: list[dict]) -> None:
    by: dict[tuple[str, float], dict] = defaultdict(dict)
    for r in rows:
        if r["criterion"] == "lnpt" and r["variant"] == "":
            by[(r["loss"], r["sparsity"])][r["seed"]] = r["final_acc"]
    print("\n| sparsity | label-free (LNPT loss) | supervised | label-free − supervised, paired [95%] |\n|---:|---:|---:|---:|")
    for s in sorted({s for loss, s in by if loss == "supervised"}):
        free, sup = by[("lnpt", s)], by[("supervised", s)]
        seeds = sorted(set(free) & set(sup))
        d = np.array([free[k] - sup[k] for k in seeds])
        low, high = t_interval(d)
        ci = "" if math.isnan(low) else f" [{100 * low:+.2f}, {100 * high:+.2f}]"
        print(f"| {100 * s:.0f}% | {_pct([free[k] for k in seeds])} | "
              f"{_pct([sup[k] for k in seeds])} | {100 * d.mean():+.2f}{ci} "
              f"(label-free ahead on {int((d > 0).sum())}/{len(d)} seeds) |")
    dense = [r["final_acc"] for r in rows if r["sparsity"] == 0]
    if dense:
        print(f"\nDense reference (label-free): {_pct(dense)} over {len(dense)} seed(s)")


def _late_gains(sweep: Path) -> dict[tuple, tuple[float, float]]:
    """{(criterion, sparsity, loss, seed): (final accuracy, last five epochs' gain)}."""
    out = {}
    for run in load_runs([sweep], expand_sweeps=True):
        if run.summary is None:
            continue
        acc = run.series("test_acc")
        acc = acc[np.isfinite(acc)]
        key = (run.setting("criterion"), float(run.setting("sparsity")), run.setting("loss"), run.setting("seed"))
        out[key] = (float(acc[-1]), float(acc[-1] - acc[:-5].max()) if len(acc) > 5 else float("nan"))
    return out


def late_gains(sweep: Path) -> None:
    gains = _late_gains(sweep)
    trained = [g for f, g in gains.values() if f > COLLAPSED]
    print(f"\nLast five epochs' gain over the best accuracy before them, {len(trained)} cells that trained: "
          f"median {100 * np.median(trained):+.2f}, range {100 * min(trained):+.2f} to {100 * max(trained):+.2f} points")


def longer(sweep: Path, longer_sweep: Path) -> None:
    short, long_ = _late_gains(sweep), _late_gains(longer_sweep)
    epochs = {r.summary.get("epochs") for r in load_runs([longer_sweep], expand_sweeps=True) if r.summary}
    print(f"\nThe same cells trained longer ({'/'.join(map(str, sorted(epochs)))} epochs):\n")
    print("| cell | seed | this grid | longer | difference | longer run's last five epochs' gain |\n|---|---:|---:|---:|---:|---:|")
    for key, (final, gain) in sorted(long_.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if key not in short:
            continue
        crit, s, _, seed = key
        print(f"| {crit} {100 * s:.0f}% | {seed} | {100 * short[key][0]:.2f} | {100 * final:.2f} | "
              f"{100 * (final - short[key][0]):+.2f} | {100 * gain:+.2f} |")
    rows, _ = collect(longer_sweep)
    paired = [d for d in paired_differences(rows, "synflow") if d["criterion"] == "lnpt" and d["n"] > 1]
    if paired:
        print("\nLNPT minus SynFlow at the longer budget, paired by seed:\n")
        print("| sparsity | seeds | LNPT − SynFlow [95%] | SynFlow won |\n|---:|---:|---:|---:|")
        for d in paired:
            print(f"| {100 * d['sparsity']:.0f}% | {d['n']} | {100 * d['mean_diff']:+.2f} "
                  f"[{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}] | {d['n'] - d['wins']}/{d['n']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--longer", type=Path, help="a sweep of some of the same cells trained longer")
    args = ap.parse_args()
    rows, incomplete = collect(args.sweep)
    if incomplete:
        print(f"(unfinished, left out: {', '.join(incomplete)})\n")
    cells = accuracy_table(rows)
    lnpt_against_baselines(rows, cells)
    loss_and_dense(rows)
    late_gains(args.sweep)
    if args.longer:
        longer(args.sweep, args.longer)


if __name__ == "__main__":
    main()
