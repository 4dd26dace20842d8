"""The protocol weight masking and channel removal both implement, and what they return.

A pruner looks up its criterion (:meth:`Pruner.criterion`), refuses settings it cannot act
on (:meth:`Pruner.validate`) and prunes a student in place from a :class:`ScoringSource`
(:meth:`Pruner.prune`); implementations subclass the protocol to inherit
:meth:`Pruner.needs_teacher`. Everything around that — the scoring inputs, the checks of student,
teacher and label source, whether a teacher is needed — is shared (:mod:`.inputs`), so the two
paths cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import nn

from ..config import PruneSettings
from .inputs import Scorer, ScoringSource, uses_teacher


@dataclass
class PruneOutcome:
    report: dict[str, Any]            # JSON-ready report (per-layer, params, MACs, timings)
    markdown: str                     # the same for people
    sparsity: float                   # fraction of Conv/Linear weights masked or removed
    extra: dict[str, Any] = field(default_factory=dict)  # checkpoint entries needed to rebuild


@runtime_checkable
class Pruner(Protocol):
    """One way of pruning a student: masking weights, or removing channels."""

    def criterion(self, cfg: PruneSettings) -> Scorer:
        """The criterion ``cfg.criterion`` names, or a PruningError listing the known ones."""
        ...

    def validate(self, cfg: PruneSettings) -> Scorer:
        """Refuse settings that cannot give a meaningful result, before any work is done."""
        ...

    def prune(self, model: nn.Module, cfg: PruneSettings, source: ScoringSource) -> PruneOutcome:
        """Score ``model`` on inputs from ``source`` and prune it in place."""
        ...

    def needs_teacher(self, cfg: PruneSettings) -> bool:
        """Whether scoring under ``cfg`` asks the teacher anything (a CLI can skip loading one);
        shared by every pruner that subclasses this protocol."""
        return uses_teacher(self.criterion(cfg), cfg)
