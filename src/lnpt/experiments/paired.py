"""Which cells of a sweep are the same experiment, and paired differences between criteria.

Two things a mean ± std table hides:

- **Variants.** A sweep may vary settings beyond model x criterion x sparsity x loss (scope,
  rounds, score temperature, ...). Cells that differ in such a setting are different
  experiments and must not be averaged together; :func:`assign_variants` labels each cell with
  the settings in which it departs from the defaults (``scope=layer``), among those that vary.
- **Pairing.** Cells with the same seed share the student's initialisation, the scoring
  batches and the data order, so the difference between two criteria *at the same seed* is far
  less noisy than the difference of their means. :func:`paired_differences` reports, against
  a baseline criterion, the mean paired difference with a 95% Student-t interval over seeds:
  an interval that contains 0 says the sweep cannot tell the two apart.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..analysis.runs import flatten_config
from ..config import OPERATIONAL, RunConfig, result_settings
from ..extras import require

#: Settings that define a report group by themselves (never part of a variant label).
BASE_KEYS = ("model", "criterion", "sparsity", "loss", "seed")


#: As a config.json holds them (list settings as lists), so saved and built configs compare.
DEFAULTS: dict[str, Any] = flatten_config(json.loads(json.dumps(result_settings(RunConfig()))))


def flat_settings(config: dict) -> dict[str, Any]:
    """A run's config.json as one flat mapping, without operational settings. Settings added
    after the folder was written take their default (the behaviour the run had), so old and
    new folders of the same experiment compare equal."""
    flat = {k: v for k, v in flatten_config(json.loads(json.dumps(config))).items() if k not in OPERATIONAL}
    return {**{k: v for k, v in DEFAULTS.items() if k not in flat}, **flat} if flat else flat


def assign_variants(rows: list[dict]) -> None:
    """Set ``row["variant"]`` ("" for the default settings) on every row, in place.

    A setting counts when it takes more than one value among the rows of one model (a width
    that only follows the model does not split groups); a row's label lists those settings
    where its value differs from the default, e.g. ``rounds=10, scope=layer``. (Channel
    ratios are not variants: channel-pruned cells are grouped by theirs, see ``cell_row``.)
    """
    keys: set[str] = set()
    amount = {"sparsity", "channel_ratio"}  # what was removed is the group's own key
    for model in {r["model"] for r in rows}:
        members = [r["settings"] for r in rows if r["model"] == model]
        for k in set().union(*members) - set(BASE_KEYS) - amount:
            if len({repr(m.get(k)) for m in members}) > 1:
                keys.add(k)
    for r in rows:
        s = r["settings"]
        r["variant"] = ", ".join(f"{k}={s.get(k)}" for k in sorted(keys) if k in s and s.get(k) != DEFAULTS.get(k))


def t_interval(diffs: np.ndarray) -> tuple[float, float]:
    """The 95% t-interval of the mean of paired differences (NaN for fewer than two)."""
    if len(diffs) < 2:
        return float("nan"), float("nan")
    stats = require("scipy.stats", "the paired intervals of lnpt report --against")
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    return float(diffs.mean() - half), float(diffs.mean() + half)


def split_label(label: str) -> tuple[str, str]:
    """``"random [round_to=8]"`` -> ``("random", "round_to=8")``; a bare criterion has variant ""
    (the labels :func:`assign_variants` gives and reports print)."""
    label = label.strip()
    if label.endswith("]") and " [" in label:
        crit, variant = label[:-1].split(" [", 1)
        return crit.strip(), variant.strip()
    return label, ""


def paired_differences(rows: list[dict], against: str) -> list[dict]:
    """Final-accuracy differences to the baseline ``against`` at the same model, sparsity, loss
    and seed: per group, the mean difference, its 95% t-interval, the number of seeds paired
    and how many of them the group won. ``against`` is a criterion (its default variant) or a
    label as reports print it, ``"random [round_to=8]"``. Groups without a baseline are skipped."""
    crit, variant = split_label(against)
    base: dict[tuple, dict[Any, float]] = {}
    for r in rows:
        if r["criterion"] == crit and r["variant"] == variant:
            base.setdefault((r["model"], r["sparsity"], r["loss"]), {})[r["seed"]] = r["final_acc"]
    groups: dict[tuple, dict[Any, float]] = {}
    for r in rows:
        if r["criterion"] == crit and r["variant"] == variant:
            continue
        groups.setdefault((r["model"], r["criterion"], r["variant"], r["sparsity"], r["loss"]), {})[r["seed"]] = \
            r["final_acc"]
    out = []
    for (model, crit, variant, sparsity, loss), accs in groups.items():
        ref = base.get((model, sparsity, loss))
        if not ref:
            continue
        seeds = sorted((s for s in accs if s in ref and math.isfinite(accs[s]) and math.isfinite(ref[s])), key=str)
        if not seeds:
            continue
        diffs = np.array([accs[s] - ref[s] for s in seeds])
        low, high = t_interval(diffs)
        out.append({"model": model, "criterion": crit, "variant": variant, "sparsity": sparsity, "loss": loss,
                    "against": against, "n": len(seeds), "mean_diff": float(diffs.mean()),
                    "ci_low": low, "ci_high": high, "wins": int((diffs > 0).sum()), "seeds": seeds})
    out.sort(key=lambda r: (str(r["model"]), str(r["loss"]), str(r["sparsity"]), str(r["criterion"]), r["variant"]))
    return out
