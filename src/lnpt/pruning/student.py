"""Prune a fresh student as a :class:`PruneSettings` says: masked weights or removed channels.

The one front door shared by ``lnpt prune`` and ``lnpt run``, so both read the same settings
the same way: ``--structured`` picks channel removal (:data:`.structured.api.CHANNELS`),
otherwise weights are masked (:data:`.api.WEIGHTS`). Both implement :class:`.pruner.Pruner`
and build their scoring inputs through :class:`.inputs.ScoringSource`; what differs between
them (the report's shape, the checkpoint entries a channel-pruned model needs to be rebuilt)
is carried in :class:`PruneOutcome`.
"""
from __future__ import annotations

from dataclasses import fields

from torch import nn

from ..config import HOME, PruneSettings
from ..data.views import LabeledSet, UnlabeledView
from ..errors import PruningError
from ..teachers.base import Teacher
from .api import WEIGHTS
from .criteria import CRITERIA
from .inputs import ScoringSource
from .pruner import PruneOutcome, Pruner
from .structured.api import CHANNELS
from .structured.criteria import CHANNEL_CRITERIA

__all__ = ["PruneOutcome", "criteria_reading", "pruner_for", "prune_student", "teacher_needed", "unread_setting",
           "validate"]


def pruner_for(cfg: PruneSettings) -> Pruner:
    """Channel removal with ``structured``, else weight masking."""
    return CHANNELS if cfg.prune.structured else WEIGHTS


def validate(cfg: PruneSettings) -> None:
    """Refuse settings that cannot give a meaningful mask or channel plan, before any work."""
    if cfg.prune.prune_after_epochs < 0:
        raise PruningError(f"--prune-after-epochs must be >= 0 (0 = prune at initialisation), "
                           f"got {cfg.prune.prune_after_epochs}")
    pruner_for(cfg).validate(cfg)


def teacher_needed(cfg: PruneSettings) -> bool:
    """Whether scoring with ``cfg`` asks the teacher anything (a CLI can skip loading one)."""
    return pruner_for(cfg).needs_teacher(cfg)


def prune_student(model: nn.Module, cfg: PruneSettings, data: UnlabeledView, teacher: Teacher | None, *,
                  seed: int = 0, labeled: LabeledSet | None = None) -> PruneOutcome:
    """Prune ``model`` in place: masks (``structured`` false) or physical channel removal."""
    return pruner_for(cfg).prune(model, cfg, ScoringSource(data, teacher, labeled, seed))


#: What to use instead of a weight-pruning setting with --structured.
_CHANNEL_TWIN = {"sparsity": "--channel-ratio", "scope": "--channel-scope", "min_kept": "--min-channels"}


def unread_setting(cfg: PruneSettings, name: str) -> str | None:
    """Why the pruning chosen by ``cfg`` does not read setting ``name`` (one line naming the
    flag and who reads it), or None when it does (or ``name`` is no pruning setting)."""
    flag = "--" + name.replace("_", "-")
    section = HOME.get(name)
    if section == "weights" and cfg.prune.structured:
        return (f"{flag} is read by weight pruning; with --structured use "
                f"{_CHANNEL_TWIN.get(name, 'the channel settings (see --help-all)')}")
    if section == "channels" and not cfg.prune.structured:
        return f"{flag} is read by channel pruning; add --structured to remove channels, or drop {flag}"
    if section != "score":
        return None
    try:
        scorer = pruner_for(cfg).criterion(cfg)
    except PruningError:
        return None  # an unknown criterion is reported by validate()
    if scorer.settings is not None and name in {f.name for f in fields(scorer.settings)}:
        return None
    readers = criteria_reading(name)
    return f"{flag} is read by criteria {', '.join(readers) or '(none)'}; --criterion {scorer.name} does not read it"


def criteria_reading(name: str) -> list[str]:
    """The weight and native channel criteria whose declared settings include ``name``."""
    specs = [*map(CRITERIA.get, CRITERIA.names()), *map(CHANNEL_CRITERIA.get, CHANNEL_CRITERIA.names())]
    return sorted({s.name for s in specs if s.settings is not None and name in {f.name for f in fields(s.settings)}})
