"""Pruning before training: criteria score weights, one selection turns scores into masks.

The mask plumbing itself (attach, read, fold away) lives one layer down in
:mod:`lnpt.surgery`, so checkpoints and complexity counts use it without importing pruning;
it is re-exported here because pruning is where users look for it.
"""
from __future__ import annotations

from ..surgery.masks import (
           Masks,
           apply_masks,
           get_masks,
           prepare_for_masks,
           remove_masks,
)
from .api import WEIGHTS, WeightPruner, needs_teacher, prune_at_init, validate_prune_config
from .criteria import CRITERIA, CriterionSpec, ScoringInputs, register_criterion
from .inputs import ScoringSource
from .prunable import prunable_names
from .pruner import PruneOutcome, Pruner
from .report import LayerStat, PruneReport
from .selection import CollapseEvent, density_schedule, keep_count, select_masks
from .student import prune_student, pruner_for

__all__ = ["CRITERIA", "WEIGHTS", "CollapseEvent", "CriterionSpec", "LayerStat", "Masks", "PruneOutcome",
           "PruneReport", "Pruner", "ScoringInputs", "ScoringSource", "WeightPruner", "apply_masks",
           "density_schedule", "get_masks", "keep_count", "needs_teacher", "prepare_for_masks", "prunable_names",
           "prune_at_init", "prune_student", "pruner_for", "register_criterion", "remove_masks", "select_masks",
           "validate_prune_config"]
