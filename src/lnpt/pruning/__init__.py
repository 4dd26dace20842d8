"""Pruning before training: criteria score weights, one selection turns scores into masks.

Masks are imported eagerly (checkpoints need them, and this package must not pull in the
teachers or models while those are importing it); the rest loads on first use (PEP 562).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .masks import Masks, apply_masks, get_masks, prepare_for_masks, remove_masks

_LAZY = {
    "prune_at_init": "api", "needs_teacher": "api", "validate_prune_config": "api",
    "CRITERIA": "criteria", "CriterionSpec": "criteria", "ScoringInputs": "criteria",
    "register_criterion": "criteria", "prunable_names": "prunable",
    "LayerStat": "report", "PruneReport": "report",
    "CollapseEvent": "selection", "density_schedule": "selection", "keep_count": "selection",
    "select_masks": "selection", "PruneOutcome": "student", "prune_student": "student",
}

if TYPE_CHECKING:
    from .api import needs_teacher, prune_at_init, validate_prune_config
    from .criteria import CRITERIA, CriterionSpec, ScoringInputs, register_criterion
    from .prunable import prunable_names
    from .report import LayerStat, PruneReport
    from .selection import CollapseEvent, density_schedule, keep_count, select_masks
    from .student import PruneOutcome, prune_student


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CRITERIA", "CollapseEvent", "CriterionSpec", "LayerStat", "Masks", "PruneOutcome", "PruneReport",
           "ScoringInputs", "apply_masks", "density_schedule", "get_masks", "keep_count",
           "needs_teacher", "prepare_for_masks", "prunable_names", "prune_at_init", "prune_student",
           "register_criterion", "remove_masks", "select_masks", "validate_prune_config"]
