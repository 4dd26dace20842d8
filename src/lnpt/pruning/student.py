"""Prune a fresh student as a :class:`PruneConfig` says: masked weights or removed channels.

The one entry point shared by ``lnpt prune`` and ``lnpt run``, so both read the same settings
the same way: ``--structured`` picks channel removal, otherwise weights are masked. What
differs between the two (the report's shape, the checkpoint entries a channel-pruned model
needs to be rebuilt) is carried in :class:`PruneOutcome`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..config import PruneConfig, check_choice
from ..data.views import LabeledSet, UnlabeledView
from ..errors import PruningError
from ..teachers.base import Teacher
from .api import needs_teacher, prune_at_init, validate_prune_config
from .structured import (
    prune_channels,
    structured_extra,
    structured_needs_teacher,
    validate_structured_config,
)


@dataclass
class PruneOutcome:
    report: dict[str, Any]            # JSON-ready report (per-layer, params, MACs, timings)
    markdown: str                     # the same for people
    sparsity: float                   # fraction of Conv/Linear weights masked or removed
    extra: dict[str, Any] = field(default_factory=dict)  # checkpoint entries needed to rebuild


def validate(cfg: PruneConfig) -> None:
    """Refuse settings that cannot give a meaningful mask or channel plan, before any work."""
    if cfg.prune_after_epochs < 0:
        raise PruningError(f"--prune-after-epochs must be >= 0 (0 = prune at initialisation), "
                           f"got {cfg.prune_after_epochs}")
    check_choice(cfg, "early_schedule", PruningError)
    if cfg.structured:
        validate_structured_config(cfg)
    else:
        validate_prune_config(cfg)


def teacher_needed(cfg: PruneConfig) -> bool:
    """Whether scoring with ``cfg`` asks the teacher anything (a CLI can skip loading one)."""
    if cfg.structured:
        return structured_needs_teacher(cfg)
    return needs_teacher(cfg)


def prune_student(model: nn.Module, cfg: PruneConfig, data: UnlabeledView, teacher: Teacher | None, *,
                  seed: int = 0, labeled: LabeledSet | None = None) -> PruneOutcome:
    """Prune ``model`` in place: masks (``cfg.structured`` false) or physical channel removal."""
    if cfg.structured:
        sreport = prune_channels(model, cfg, data, teacher, seed=seed, labeled=labeled)
        return PruneOutcome(sreport.to_dict(), sreport.to_markdown(), sreport.sparsity,
                            structured_extra(model, sreport.history))
    report = prune_at_init(model, cfg, data, teacher, seed=seed, labeled=labeled)
    return PruneOutcome(report.to_dict(), report.to_markdown(), report.sparsity)
