"""``lnpt report SWEEP_DIR``: tables and figures over the finished cells of a sweep.

One row per finished cell is read from its run files (config.json for the *requested*
settings, summary.json for the outcome, prune_report.json for the mask), then grouped by
model x criterion x variant x sparsity x loss over seeds (a variant: the other settings a
cell changes, see :mod:`.paired`); with ``against``, paired differences to a baseline
criterion at the same seed are added. Spread is the sample standard deviation
(ddof=1, undefined for a single seed); accuracies are fractions in the CSV files and
percentages in the markdown. Everything is written atomically into ``--out``.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..analysis.runs import Run, load_run, prune_layers
from ..atomic import write_text
from ..errors import LnptError
from ..run_folder import RunFolder
from .paired import assign_variants, flat_settings, paired_differences, split_label
from .report_figures import accuracy_vs_sparsity_figure, kept_fraction_figure
from .report_tables import render_markdown
from .sweep import FAILURES_FILE

GROUP_KEYS = ("model", "criterion", "variant", "sparsity", "loss")
LOSS_ORDER = ("lnpt", "pseudo", "supervised")


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for one value) of the finite values."""
    a = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def channel_amount(ratio: float) -> str:
    """The group key of channel-pruned cells: ``"channels 50%"`` for channel ratio 0.5."""
    return f"channels {100 * ratio:g}%"


def _float(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def cell_row(run: Run) -> dict[str, Any]:
    """The numbers of one finished cell; grouping keys come from the requested config."""
    s, pr = run.summary or {}, run.prune_report or {}
    return {
        "cell": run.name,
        "model": run.setting("model", s.get("model")),
        "criterion": run.setting("criterion", s.get("criterion")),
        # Channel-pruned cells are grouped by what was asked of them, the channel ratio (their
        # weight sparsity, which differs by criterion under the global scope, is in
        # achieved_sparsity).
        "sparsity": (channel_amount(_float(run.setting("channel_ratio"))) if run.setting("structured")
                     else _float(run.setting("sparsity", s.get("sparsity")))),
        "loss": run.setting("loss", s.get("loss")),
        "seed": run.setting("seed", s.get("seed")),
        "final_acc": _float(s.get("final_acc")),
        "best_acc": _float(s.get("best_acc")),
        "achieved_sparsity": _float(s.get("sparsity", pr.get("sparsity"))),
        "seconds": _float(s.get("seconds")),
        "prune_seconds": _float(pr.get("seconds")),
        "train_seconds": _float(s.get("train_seconds")),
        "layers": prune_layers(pr),
        "settings": flat_settings(run.config),
    }


def collect(sweep_dirs: str | Path | Iterable[str | Path]) -> tuple[list[dict], list[str]]:
    """Rows of the finished cells and the names of unfinished ones (folders without summary),
    over one sweep directory or several (e.g. a grid and a follow-up that reuses its baselines)."""
    dirs = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    rows, incomplete = [], []
    for sweep_dir in dirs:
        if not sweep_dir.is_dir():
            raise LnptError(f"sweep directory {sweep_dir} does not exist")
        for d in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if RunFolder(d).finished:
                rows.append(cell_row(load_run(d)))
            elif RunFolder(d).started:
                incomplete.append(d.name if len(dirs) == 1 else f"{sweep_dir.name}/{d.name}")
    if not rows:
        raise LnptError(f"no finished cells (folders with {RunFolder.SUMMARY}) in {', '.join(map(str, dirs))}; "
                        "run `lnpt sweep` first")
    assign_variants(rows)
    return _unique(rows), incomplete


def _unique(rows: list[dict]) -> list[dict]:
    """One row per experiment: two folders with the same result-deciding settings (e.g. a
    follow-up sweep's base cell that repeats a grid cell) are the same run, counted once."""
    seen: set[str] = set()
    out = []
    for r in rows:
        key = json.dumps(r["settings"], sort_keys=True, default=str)
        if not r["settings"]:  # no config.json: nothing says two such folders are one run
            out.append(r)
        elif key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0.0, str(value))


def group_rows(rows: list[dict], keys: tuple[str, ...] = GROUP_KEYS) -> list[dict]:
    """Mean/std over seeds of final and best accuracy (and mean times) per group."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k)):
        members = groups[key]
        fm, fs = mean_std(r["final_acc"] for r in members)
        bm, bs = mean_std(r["best_acc"] for r in members)
        out.append({**dict(zip(keys, key)), "n": len(members),
                    "final_acc_mean": fm, "final_acc_std": fs, "best_acc_mean": bm, "best_acc_std": bs,
                    "achieved_sparsity_mean": mean_std(r["achieved_sparsity"] for r in members)[0],
                    "seconds_mean": mean_std(r["seconds"] for r in members)[0],
                    "prune_seconds_mean": mean_std(r["prune_seconds"] for r in members)[0],
                    "train_seconds_mean": mean_std(r["train_seconds"] for r in members)[0],
                    "seeds": sorted((r["seed"] for r in members), key=_sort_key)})
    return out


def _losses(rows: list[dict]) -> list[str]:
    present = {str(r["loss"]) for r in rows}
    return [x for x in LOSS_ORDER if x in present] + sorted(present - set(LOSS_ORDER))


def _masks_agree(members: list[dict]) -> str:
    """Whether cells sharing model/criterion/sparsity/seed but differing in loss kept the same
    number of weights in every layer (a cheap check that they really trained the same mask)."""
    by_seed: dict[Any, set] = {}
    for r in members:
        if not r["layers"]:
            return "n/a"
        sig = json.dumps({k: v.get("kept") for k, v in sorted(r["layers"].items())})
        by_seed.setdefault(r["seed"], set()).add(sig)
    return "same" if all(len(s) == 1 for s in by_seed.values()) else "differ"


def loss_comparison(rows: list[dict]) -> list[dict]:
    """Label-free vs supervised on the same mask: per model x criterion x sparsity, the final
    accuracy of each loss and the differences of lnpt to the others (in accuracy points)."""
    losses = _losses(rows)
    if len(losses) < 2:
        return []
    per_loss = {(g["model"], g["criterion"], g["variant"], g["sparsity"], str(g["loss"])): g
                for g in group_rows(rows)}
    keys = sorted({(r["model"], r["criterion"], r["variant"], r["sparsity"]) for r in rows},
                  key=lambda k: tuple(_sort_key(v) for v in k))
    out = []
    for m, c, v, s in keys:
        row: dict[str, Any] = {"model": m, "criterion": c, "variant": v, "sparsity": s}
        for loss in losses:
            g = per_loss.get((m, c, v, s, loss))
            row[f"{loss}_mean"] = g["final_acc_mean"] if g else float("nan")
            row[f"{loss}_std"] = g["final_acc_std"] if g else float("nan")
            row[f"{loss}_n"] = g["n"] if g else 0
        for other in losses:
            if other != "lnpt" and "lnpt" in losses:
                row[f"lnpt_minus_{other}"] = row["lnpt_mean"] - row[f"{other}_mean"]
        row["masks"] = _masks_agree([r for r in rows
                                     if (r["model"], r["criterion"], r["variant"], r["sparsity"]) == (m, c, v, s)])
        out.append(row)
    return out


def wall_times(rows: list[dict]) -> list[dict]:
    """Mean pruning (scoring), training and total run time per model x criterion x sparsity."""
    out = []
    keys = ("model", "criterion", "variant", "sparsity", "n", "prune_seconds_mean", "train_seconds_mean",
            "seconds_mean")
    for g in group_rows(rows, ("model", "criterion", "variant", "sparsity")):
        out.append({k: g[k] for k in keys})
    return out


def to_csv(records: list[dict]) -> str:
    """CSV of flat records; NaN becomes an empty field, lists are ';'-joined."""
    if not records:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: _csv_value(v) for k, v in r.items()})
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return v


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


def write_report(sweep_dir: str | Path | Iterable[str | Path], out: str | Path | None = None,
                 against: str | None = None) -> dict:
    """Write results.csv, loss_comparison.csv, wall_times.csv, report.json, report.md and the
    figures (PNG + SVG) for ``sweep_dir`` (one folder or several) into ``out`` (default
    ``SWEEP_DIR/report`` of the first); with ``against`` also paired.csv, the paired
    differences of every criterion to that one."""
    dirs = [Path(sweep_dir)] if isinstance(sweep_dir, (str, Path)) else [Path(d) for d in sweep_dir]
    out = Path(out) if out is not None else dirs[0] / "report"
    rows, incomplete = collect(dirs)
    failures = {}
    for d in dirs:
        path = d / FAILURES_FILE
        if path.is_file():
            failures.update(json.loads(path.read_text()))
    paired = paired_differences(rows, against) if against else []
    if against:
        crit, variant = split_label(against)
        if not any(r["criterion"] == crit for r in rows):
            raise LnptError(f"--against {against}: no finished cell uses criterion {crit!r}")
        if not any(r["criterion"] == crit and r["variant"] == variant for r in rows):
            labels = sorted({f"{crit} [{r['variant']}]" if r["variant"] else crit for r in rows if r["criterion"] == crit})
            raise LnptError(f"--against {against}: the cells of {crit!r} here all vary other settings; "
                            f"name one of them exactly: {'; '.join(repr(x) for x in labels)}")
    result = {"sweep": ", ".join(map(str, dirs)), "groups": group_rows(rows), "comparison": loss_comparison(rows),
              "wall_times": wall_times(rows), "paired": paired, "against": against,
              "cells": [{k: v for k, v in r.items() if k not in ("layers", "settings")} for r in rows],
              "incomplete": incomplete,
              "failures": {k: v.get("error", "") for k, v in failures.items()},
              "total_seconds": float(np.nansum([r["seconds"] for r in rows]))}
    out.mkdir(parents=True, exist_ok=True)
    figures = {"accuracy_vs_sparsity": accuracy_vs_sparsity_figure(result["groups"], out),
               "kept_fraction": kept_fraction_figure(rows, out)}
    result["figures"] = {k: [p.name for p in v] for k, v in figures.items() if v}
    write_text(out / "results.csv", to_csv(result["groups"]))
    write_text(out / "loss_comparison.csv", to_csv(result["comparison"]))
    write_text(out / "wall_times.csv", to_csv(result["wall_times"]))
    if paired:
        write_text(out / "paired.csv", to_csv(paired))
    write_text(out / "report.json", json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n")
    write_text(out / "report.md", render_markdown(result))
    return result
