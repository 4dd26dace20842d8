"""``lnpt plan``: choose the sparsity before paying for training.

Each candidate (criterion, sparsity) is pruned and trained for a short probe — the run's own
settings with ``epochs = probe_epochs`` — into ``OUT/probes/<criterion>-s<sparsity>``, an
ordinary run folder, so a stopped plan resumes and a finished probe is never trained twice.
The probe's learning gap (measured on held-out images as *unlabeled* data, against the teacher)
decides; :func:`lnpt.analysis.plan_rule.choose` turns gaps into the recommendation. Beside the
gap the plan reads one more label-free number of the same held-out images: how often the probe
predicts the teacher's class, which tells a probe that has not started to learn (at chance)
from one that has. A probe still logs test accuracy where the dataset has test labels (the
pipeline always does), but the plan never looks at it.

With the default one warm-up epoch, a one-epoch probe follows the same learning rates as the
first epoch of the full run, so its gap is the full run's epoch-1 gap: what docs/PLAN.md
validates the rule on.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..analysis.plan_rule import (
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_TOLERANCE,
    RULES,
    Candidate,
    Decision,
    NothingLearned,
    choose,
)
from ..atomic import write_text
from ..config import RunConfig
from ..errors import ConfigError
from ..pruning.student import validate
from .pipeline import run_pipeline


@dataclass(frozen=True)
class PlanSettings:
    """What to probe and how to decide. ``tolerance`` is relative to the reference gap under
    the ``relative`` rule (0.25: up to 25% larger), absolute under ``additive``. A probe whose
    held-out teacher agreement is below ``min_agreement`` times chance (1 / classes) has not
    started to learn and is set aside (0 turns the check off)."""

    sparsities: tuple[float, ...]
    criteria: tuple[str, ...] = ("lnpt",)
    probe_epochs: int = 1
    tolerance: float = DEFAULT_TOLERANCE
    rule: str = "relative"
    min_agreement: float = DEFAULT_MIN_AGREEMENT


def check_settings(cfg: RunConfig, plan: PlanSettings) -> None:
    """Refuse a plan that cannot be made, before any probe trains."""
    if not plan.sparsities or not plan.criteria:
        raise ConfigError("lnpt plan needs at least one sparsity (--sparsities) and one criterion (--criteria)")
    if any(not 0.0 <= s < 1.0 for s in plan.sparsities):
        raise ConfigError(f"--sparsities must lie in [0, 1), got {list(plan.sparsities)}")
    if plan.probe_epochs < 1:
        raise ConfigError(f"--probe-epochs must be >= 1, got {plan.probe_epochs}")
    if plan.tolerance < 0:
        raise ConfigError(f"--tolerance must be >= 0, got {plan.tolerance}")
    if plan.min_agreement < 0:
        raise ConfigError(f"--min-agreement must be >= 0 (times chance), got {plan.min_agreement}")
    if plan.rule not in RULES:
        raise ConfigError(f"unknown --rule {plan.rule!r}; known: {', '.join(RULES)}")
    if cfg.prune.structured:
        raise ConfigError("lnpt plan chooses among weight sparsities; drop --structured")
    if cfg.data.val_fraction <= 0:
        raise ConfigError("lnpt plan measures the learning gap on held-out images; set --val-fraction > 0")
    for criterion in plan.criteria:  # an unknown criterion fails before the first probe trains
        validate(probe_config(cfg, criterion, max(plan.sparsities), plan.probe_epochs).pruning)


def probe_name(criterion: str, sparsity: float) -> str:
    return f"{criterion}-s{sparsity:g}"


def probe_config(cfg: RunConfig, criterion: str, sparsity: float, epochs: int) -> RunConfig:
    """The run's settings, pruned by ``criterion`` to ``sparsity`` and trained ``epochs``."""
    return dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, criterion=criterion),
                               weights=dataclasses.replace(cfg.weights, sparsity=sparsity),
                               train=dataclasses.replace(cfg.train, epochs=epochs))


def probe_gap(summary: dict, where: Path) -> float:
    """The learning gap a probe ended with: the number of its summary the plan decides on."""
    gap = summary.get("gap")
    if gap is None:
        raise ConfigError(f"probe {where} logged no learning gap (it needs a teacher and held-out "
                          "images); check --teacher and --val-fraction")
    return float(gap)


def probe_candidate(criterion: str, sparsity: float, summary: dict, where: Path) -> Candidate:
    """A probe as the rule sees it: its gap and its held-out teacher agreement (None in a probe
    folder written before lnpt logged it, which turns the learning check off for that probe)."""
    agreement = summary.get("heldout_agreement")
    return Candidate(criterion, sparsity, probe_gap(summary, where), None if agreement is None else float(agreement))


def make_plan(cfg: RunConfig, plan: PlanSettings, out: str | Path, progress: bool = True) -> Decision:
    """Probe every candidate (reusing finished probes in ``out``), decide, and write
    ``plan.json`` and ``plan.md`` atomically. Returns the decision."""
    check_settings(cfg, plan)
    out = Path(out)
    candidates, classes = [], 0
    for criterion in plan.criteria:
        for sparsity in plan.sparsities:
            where = out / "probes" / probe_name(criterion, sparsity)
            summary = run_pipeline(probe_config(cfg, criterion, sparsity, plan.probe_epochs), where,
                                   resume=True, progress=progress)
            candidates.append(probe_candidate(criterion, sparsity, summary, where))
            classes = int(summary.get("classes") or 0)
    min_agreement = plan.min_agreement / classes if classes else 0.0
    decision: Decision | None = None
    try:
        decision = choose(candidates, plan.tolerance, plan.rule, min_agreement)
        record = plan_record(plan, decision, candidates, min_agreement)
    except NothingLearned as exc:  # recorded, so the probes' numbers are there to read
        record = {**plan_record(plan, None, candidates, min_agreement),
                  "refused": f"{exc}; probe longer (--probe-epochs {plan.probe_epochs + 1}) or add denser --sparsities"}
    write_text(out / "plan.json", json.dumps(record, indent=2))
    write_text(out / "plan.md", plan_markdown(record))
    if decision is None:
        raise ConfigError(record["refused"])
    return decision


def plan_record(plan: PlanSettings, decision: Decision | None, candidates: list[Candidate],
                min_agreement: float = 0.0) -> dict:
    good = set(decision.predicted_good) if decision else set()
    return {
        "settings": dataclasses.asdict(plan), "min_agreement": min_agreement,
        "reference": dataclasses.asdict(decision.reference) if decision else None,
        "gap_bound": decision.bound if decision else None,
        "recommended": {**dataclasses.asdict(decision.chosen),
                        "probe": f"probes/{probe_name(decision.chosen.criterion, decision.chosen.sparsity)}"}
        if decision else None,
        "candidates": [{**dataclasses.asdict(c), "learned": c.learned(min_agreement), "predicted_good": c in good,
                        "probe": f"probes/{probe_name(c.criterion, c.sparsity)}"} for c in candidates],
    }


def plan_markdown(record: dict) -> str:
    s, rec, ref = record["settings"], record["recommended"], record["reference"]

    def agree(c: dict) -> str:
        return "-" if c["agreement"] is None else f"{c['agreement']:.1%}" + ("" if c["learned"] else " (stalled)")

    rows = "".join(f"| {c['criterion']} | {c['sparsity']:g} | {c['gap']:.4f} | {agree(c)} | "
                   f"{'yes' if c['predicted_good'] else 'no'} | `{c['probe']}` |\n" for c in record["candidates"])
    table = ("| criterion | sparsity | gap | teacher agreement | predicted within tolerance | probe |\n"
             "|---|---:|---:|---:|---|---|\n" + rows)
    stalled = (f"A probe agreeing with the teacher's class on fewer than {record['min_agreement']:.1%} of the "
               "held-out images had not started to learn: it is neither the reference nor recommended. ")
    if rec is None:
        return f"# Plan\n\nNo recommendation: {record['refused']}.\n\n{stalled}\n\n{table}"
    rule = (f"gap <= {ref['gap']:.4f} x (1 + {s['tolerance']:g})" if s["rule"] == "relative"
            else f"gap <= {ref['gap']:.4f} + {s['tolerance']:g}")
    return (f"# Plan\n\nRecommended: **{rec['criterion']} at sparsity {rec['sparsity']:g}** "
            f"(learning gap {rec['gap']:.4f} after a {s['probe_epochs']}-epoch probe).\n\n"
            f"Rule ({s['rule']}): {rule}, the reference being {ref['criterion']} at {ref['sparsity']:g}, "
            "the densest learning candidate with the smallest gap; the sparsest candidate within it is "
            f"recommended. {stalled}No label was used to decide.\n\n" + table)
