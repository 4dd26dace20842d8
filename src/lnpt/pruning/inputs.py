"""The scoring inputs of both pruning paths, built in one place.

Weight masking and channel removal score with the same data: ``batches`` shuffled batches of
an :class:`UnlabeledView`, the teacher's guidance for them (computed once, reused by every
round), the settings the criterion declares and, only for a criterion that asks for labels, a
label function over teacher pseudo-labels or (``label_source = "true"``, the supervised
comparison) the true labels.
Building them here, with the checks they need, keeps the label-free guarantee in one function.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch
from torch import nn

from ..config import PruneSettings, ScoreConfig, check_choice
from ..data.views import LabeledSet, UnlabeledView
from ..errors import PruningError
from ..models import find_classifier
from ..teachers.base import Guidance, Teacher, check_compatible
from .criteria import LabelFn, ScoringInputs
from .criteria.base import Needs


class Scorer(Protocol):
    """What the front door needs to know of a weight or channel criterion."""

    @property
    def name(self) -> str: ...

    @property
    def needs(self) -> Needs: ...

    @property
    def settings(self) -> type | None: ...


def uses_teacher(scorer: Scorer, cfg: PruneSettings) -> bool:
    """Whether scoring asks the teacher anything: for guidance, or for pseudo-labels."""
    return scorer.needs == "teacher" or (scorer.needs == "labels" and cfg.prune.label_source == "teacher")


def criterion_settings(scorer: Scorer, score: ScoreConfig) -> Any:
    """The settings ``scorer`` declares, read from the ``score`` section (None: it reads none)."""
    if scorer.settings is None:
        return None
    return scorer.settings(**{f.name: getattr(score, f.name) for f in fields(scorer.settings)})


def validate_scoring_settings(cfg: PruneSettings, scorer: Scorer) -> None:
    """The checks weight and channel pruning share: how scoring batches are drawn and scored,
    and the criterion's own settings (their ``check()``)."""
    p = cfg.prune
    if p.batches < 1:
        raise PruningError(f"zero scoring batches: --batches must be >= 1, got {p.batches}")
    if p.score_batch_size < 1:
        raise PruningError(f"--score-batch-size must be >= 1, got {p.score_batch_size}")
    check_choice(p, "score_bn", PruningError)
    check_choice(cfg.score, "score_adapter", PruningError)
    if p.label_source not in ("teacher", "true"):
        raise PruningError(f"unknown label source {p.label_source!r}; known: teacher, true")
    settings = criterion_settings(scorer, cfg.score)
    if hasattr(settings, "check"):
        settings.check()


def draw_scoring_batches(data: UnlabeledView, cfg: PruneSettings,
                         seed: int) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The unlabeled scoring batches (and their sample indices), drawn reproducibly from ``seed``;
    shared by weight and channel scoring so both see the same data."""
    gen = torch.Generator().manual_seed(seed)
    drawn = list(data.batches(cfg.prune.score_batch_size, shuffle=True, generator=gen, limit=cfg.prune.batches))
    if not drawn:
        raise PruningError("zero scoring batches: the unlabeled scoring view is empty")
    return [index for index, _ in drawn], tuple(x for _, x in drawn)


@dataclass(frozen=True)
class ScoringSource:
    """Where scoring inputs come from. ``labeled`` is read only when ``label_source`` is "true"
    and the criterion asks for labels; ``seed`` draws the batches and seeds the criterion's
    generator."""

    data: UnlabeledView
    teacher: Teacher | None = None
    labeled: LabeledSet | None = None
    seed: int = 0

    def check(self, model: nn.Module, scorer: Scorer, cfg: PruneSettings) -> None:
        """Refuse a student, teacher or label source that does not fit, before any work."""
        info = self.data.info
        out = find_classifier(model).out_features
        if out != info.num_classes:
            raise PruningError(f"the student has {out} outputs but dataset {info.name} has {info.num_classes} classes")
        if self.teacher is not None:
            check_compatible(self.teacher.info, info)
        if uses_teacher(scorer, cfg) and self.teacher is None:
            raise PruningError(f"criterion {scorer.name} needs a teacher"
                               + (" (its pseudo-labels)" if scorer.needs == "labels" else "") + "; pass one")
        if scorer.needs == "labels" and cfg.prune.label_source == "true":
            if self.labeled is None:
                raise PruningError(f"label source 'true' needs the labeled set for {scorer.name}")
            if len(self.labeled) != len(self.data):
                raise PruningError(f"the labeled set ({len(self.labeled)}) and the scoring view ({len(self.data)}) "
                                   "differ in length; pass labeled=<set> with data=<set>.unlabeled()")

    def build(self, scorer: Scorer, cfg: PruneSettings,
              device: torch.device = torch.device("cpu")) -> tuple[ScoringInputs, float]:
        """The scoring inputs for ``scorer`` on ``device`` (the scored model's: batches, guidance
        and labels are made or moved there once, not per round) and the seconds the teacher
        took to guide them."""
        indices, batches = draw_scoring_batches(self.data, cfg, self.seed)
        batches = tuple(x.to(device) for x in batches)
        t0 = time.perf_counter()
        guidance = None
        if uses_teacher(scorer, cfg):
            if self.teacher is None:
                raise PruningError(f"criterion {scorer.name} needs a teacher; pass one")
            guidance = tuple(_on(self.teacher.guide(x), device) for x in batches)
        teacher_seconds = time.perf_counter() - t0
        labels = self._labels(scorer, cfg, [i.to(device) for i in indices], guidance)
        return ScoringInputs(batches, guidance, labels, self.data.info.input_shape, cfg.prune,
                             torch.Generator().manual_seed(self.seed),
                             criterion_settings(scorer, cfg.score)), teacher_seconds

    def _labels(self, scorer: Scorer, cfg: PruneSettings, indices: list[torch.Tensor],
                guidance: tuple | None) -> LabelFn | None:
        if scorer.needs != "labels":
            return None
        if cfg.prune.label_source == "true":
            if self.labeled is None:
                raise PruningError(f"label source 'true' needs the labeled set for {scorer.name}")
            true = self.labeled.labels.to(indices[0].device) if indices else self.labeled.labels
            return lambda i: true[indices[i]]
        assert guidance is not None
        pseudo = guidance
        return lambda i: pseudo[i].pseudo_labels


def _on(guidance: Guidance, device: torch.device) -> Guidance:
    """``guidance`` on ``device`` (a teacher answers where it runs: its GPU, or the CPU)."""
    if guidance.logits.device == device:
        return guidance
    return Guidance(guidance.logits.to(device), guidance.features.to(device))
