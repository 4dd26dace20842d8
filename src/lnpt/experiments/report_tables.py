"""Markdown rendering of a sweep report (the numbers come from :mod:`.report`)."""
from __future__ import annotations

import math
from typing import Any


def pct(mean: float, std: float | None = None) -> str:
    """``85.12 ± 0.35`` in percent; a single seed has no spread (``85.12 ± —``)."""
    if mean is None or math.isnan(mean):
        return "—"
    if std is None:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {'—' if math.isnan(std) else f'{100 * std:.2f}'}"


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else fmt.format(v)
    return str(v)


def _sparsity(v: Any) -> str:
    return f"{100 * v:g}%" if isinstance(v, float) and not math.isnan(v) else str(v)


def crit(r: dict) -> str:
    """A criterion with its variant, e.g. ``lnpt [scope=layer]``."""
    return f"{r['criterion']} [{r['variant']}]" if r.get("variant") else str(r["criterion"])


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(r) + " |" for r in rows] + [""]


def render_markdown(result: dict) -> str:
    lines = [f"# Sweep report: `{result['sweep']}`", "",
             f"{len(result['cells'])} finished cell(s), total run time {result['total_seconds'] / 60:.1f} min. "
             "Accuracies in %, mean ± sample std over seeds (ddof=1; — for a single seed).", ""]
    if result["incomplete"]:
        lines += [f"Unfinished cells (not in the tables): {', '.join(result['incomplete'])}", ""]
    if result["failures"]:
        lines += ["Failed cells (see failures.json):", ""]
        lines += [f"- `{k}`: {v}" for k, v in result["failures"].items()] + [""]

    lines += ["## Test accuracy per model x criterion x sparsity x loss", ""]
    lines += _table(
        ["model", "criterion", "sparsity", "loss", "seeds", "final acc", "best acc", "achieved sparsity", "time (s)"],
        [[str(g["model"]), crit(g), _sparsity(g["sparsity"]), str(g["loss"]), str(g["n"]),
          pct(g["final_acc_mean"], g["final_acc_std"]), pct(g["best_acc_mean"], g["best_acc_std"]),
          _num(g["achieved_sparsity_mean"], "{:.4f}"), _num(g["seconds_mean"])] for g in result["groups"]])
    lines += ["CSV: `results.csv`.", ""]

    comp = result["comparison"]
    if comp:
        losses = [k[:-5] for k in comp[0] if k.endswith("_mean")]
        diffs = [k for k in comp[0] if k.startswith("lnpt_minus_")]
        lines += ["## Label-free vs supervised training on the same mask", "",
                  "Final accuracy per training loss for the same model, criterion and sparsity "
                  "(the same seed gives the same mask); differences in accuracy points; `masks` "
                  "checks that the per-layer kept counts agree across losses.", ""]
        lines += _table(
            ["model", "criterion", "sparsity"] + losses + [d.replace("_minus_", " − ") for d in diffs] + ["masks"],
            [[str(r["model"]), crit(r), _sparsity(r["sparsity"])]
             + [pct(r[f"{loss}_mean"], r[f"{loss}_std"]) for loss in losses]
             + [_num(100 * r[d], "{:+.2f}") if not math.isnan(r[d]) else "—" for d in diffs] + [r["masks"]]
             for r in comp])
        lines += ["CSV: `loss_comparison.csv`.", ""]

    if result.get("paired"):
        lines += [f"## Paired differences against `{result['against']}`", "",
                  f"Final accuracy minus `{result['against']}`'s at the same model, sparsity, loss and "
                  "seed (the same seed shares the initialisation, scoring batches and data order), in "
                  "accuracy points: mean over seeds with a 95% Student-t interval. An interval that "
                  "contains 0 means this sweep cannot tell the two apart. CSV: `paired.csv`.", ""]
        lines += _table(["model", "criterion", "sparsity", "loss", "seeds", "mean diff", "95% interval", "wins"],
                        [[str(r["model"]), crit(r), _sparsity(r["sparsity"]), str(r["loss"]), str(r["n"]),
                          _num(100 * r["mean_diff"], "{:+.2f}"),
                          "—" if math.isnan(r["ci_low"]) else f"[{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]",
                          f"{r['wins']}/{r['n']}"] for r in result["paired"]])
    lines += ["## Wall times", "", "Mean seconds per cell: pruning (scoring + mask), training epochs, "
              "and the whole run (data, teacher, pruning, training, evaluation).", ""]
    lines += _table(["model", "criterion", "sparsity", "cells", "prune (s)", "train (s)", "run (s)"],
                    [[str(w["model"]), crit(w), _sparsity(w["sparsity"]), str(w["n"]),
                      _num(w["prune_seconds_mean"], "{:.2f}"), _num(w["train_seconds_mean"]), _num(w["seconds_mean"])]
                     for w in result["wall_times"]])
    lines += ["## Figures", ""]
    if "accuracy_vs_sparsity" in result.get("figures", {}):
        lines += ["![accuracy vs sparsity](accuracy_vs_sparsity.png)", "",
                  "Final test accuracy against sparsity per criterion (error bars: sample std over seeds).", ""]
    if "kept_fraction" in result.get("figures", {}):
        lines += ["![kept fraction per layer](kept_fraction.png)", "",
                  "Fraction of weights each criterion keeps in every prunable layer (mean over cells).", ""]
    return "\n".join(lines)
