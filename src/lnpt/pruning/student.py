"""Prune a fresh student as a :class:`PruneConfig` says: masked weights or removed channels.

The one front door shared by ``lnpt prune`` and ``lnpt run``, so both read the same settings
the same way: ``--structured`` picks channel removal (:data:`.structured.api.CHANNELS`),
otherwise weights are masked (:data:`.api.WEIGHTS`). Both implement :class:`.pruner.Pruner`
and build their scoring inputs through :class:`.inputs.ScoringSource`; what differs between
them (the report's shape, the checkpoint entries a channel-pruned model needs to be rebuilt)
is carried in :class:`PruneOutcome`.
"""
from __future__ import annotations

from torch import nn

from ..config import PruneConfig, check_choice
from ..data.views import LabeledSet, UnlabeledView
from ..errors import PruningError
from ..teachers.base import Teacher
from .api import WEIGHTS
from .inputs import ScoringSource
from .pruner import PruneOutcome, Pruner
from .structured.api import CHANNELS

__all__ = ["PruneOutcome", "pruner_for", "prune_student", "teacher_needed", "validate"]


def pruner_for(cfg: PruneConfig) -> Pruner:
    """Channel removal with ``cfg.structured``, else weight masking."""
    return CHANNELS if cfg.structured else WEIGHTS


def validate(cfg: PruneConfig) -> None:
    """Refuse settings that cannot give a meaningful mask or channel plan, before any work."""
    if cfg.prune_after_epochs < 0:
        raise PruningError(f"--prune-after-epochs must be >= 0 (0 = prune at initialisation), "
                           f"got {cfg.prune_after_epochs}")
    check_choice(cfg, "early_schedule", PruningError)
    pruner_for(cfg).validate(cfg)


def teacher_needed(cfg: PruneConfig) -> bool:
    """Whether scoring with ``cfg`` asks the teacher anything (a CLI can skip loading one)."""
    return pruner_for(cfg).needs_teacher(cfg)


def prune_student(model: nn.Module, cfg: PruneConfig, data: UnlabeledView, teacher: Teacher | None, *,
                  seed: int = 0, labeled: LabeledSet | None = None) -> PruneOutcome:
    """Prune ``model`` in place: masks (``cfg.structured`` false) or physical channel removal."""
    return pruner_for(cfg).prune(model, cfg, ScoringSource(data, teacher, labeled, seed))
