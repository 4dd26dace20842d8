"""Figures of a sweep report: accuracy vs sparsity, and kept fraction per layer.

One panel per model x loss (accuracy) or model x sparsity (layers) and one line per
criterion, so criteria are always compared under the same training and the same budget.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..analysis.figures import colors, new_figure, save_figure


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def _label(r: dict) -> str:
    return f"{r['criterion']} [{r['variant']}]" if r.get("variant") else str(r["criterion"])


def _criteria(records: list[dict]) -> list[str]:
    return sorted({_label(r) for r in records})


def accuracy_vs_sparsity_figure(groups: list[dict], out_dir: Path, stem: str = "accuracy_vs_sparsity") -> list[Path]:
    """Mean final accuracy (error bars = sample std over seeds) against sparsity. Channel-pruned
    groups (keyed by their channel ratio, a string) are not on this axis and are left out;
    empty list when no group is."""
    groups = [g for g in groups if isinstance(g["sparsity"], (int, float))]
    if not groups:
        return []
    panels = sorted({(str(g["model"]), str(g["loss"])) for g in groups})
    criteria = _criteria(groups)
    palette = dict(zip(criteria, colors(len(criteria))))
    rows, cols = _grid(len(panels))
    fig = new_figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (model, loss) in zip(axes, panels):
        for crit in criteria:
            sel = sorted((g for g in groups if (str(g["model"]), str(g["loss"]), _label(g)) == (model, loss, crit)),
                         key=lambda g: g["sparsity"])
            if not sel:
                continue
            x = np.array([100 * g["sparsity"] for g in sel])
            y = np.array([100 * g["final_acc_mean"] for g in sel])
            err = np.nan_to_num(np.array([100 * g["final_acc_std"] for g in sel]), nan=0.0)
            ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=3, linewidth=1.5,
                        color=palette[crit], label=crit)
        ax.set_title(f"{model}, loss={loss}", fontsize=10)
        ax.set_xlabel("sparsity (% of prunable weights removed)")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(title="criterion", fontsize=8, title_fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    try:
        return save_figure(fig, out_dir, stem)
    finally:
        fig.clear()


def kept_fraction_figure(rows: list[dict], out_dir: Path, stem: str = "kept_fraction") -> list[Path]:
    """Per prunable layer, the fraction of weights each criterion keeps (mean over the cells of
    that model and sparsity). Empty list when no cell has a prune report."""
    rows = [r for r in rows if r["layers"]]
    if not rows:
        return []
    panels = sorted({(str(r["model"]), r["sparsity"]) for r in rows},
                    key=lambda p: (p[0], isinstance(p[1], str), str(p[1]) if isinstance(p[1], str) else p[1]))
    criteria = _criteria(rows)
    palette = dict(zip(criteria, colors(len(criteria))))
    n_rows, cols = _grid(len(panels))
    fig = new_figure(figsize=(5.2 * cols, 4.0 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, cols, squeeze=False).ravel()
    for ax, (model, sparsity) in zip(axes, panels):
        members = [r for r in rows if (str(r["model"]), r["sparsity"]) == (model, sparsity)]
        layers: list[str] = []
        for r in members:  # layer order as the prune report lists them (model order)
            layers += [name for name in r["layers"] if name not in layers]
        x = np.arange(len(layers))
        for crit in criteria:
            sel = [r for r in members if _label(r) == crit]
            if not sel:
                continue
            y = [_finite_mean([r["layers"][name]["kept_fraction"] if name in r["layers"] else float("nan")
                               for r in sel]) for name in layers]
            ax.plot(x, np.array(y) * 100, marker="o", markersize=4, linewidth=1.5, color=palette[crit], label=crit)
        ax.set_xticks(x, [name.removesuffix(".weight") for name in layers], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("weights kept (%)")
        ax.set_ylim(bottom=0)
        amount = sparsity if isinstance(sparsity, str) else f"sparsity {100 * sparsity:g}%"
        ax.set_title(f"{model}, {amount}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(title="criterion", fontsize=8, title_fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    try:
        return save_figure(fig, out_dir, stem)
    finally:
        fig.clear()


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")
