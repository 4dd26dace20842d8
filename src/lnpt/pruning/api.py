"""``prune_at_init``: score a freshly initialised student, choose masks, attach them.

The label-free guarantee is structural: criteria get image batches from an
:class:`UnlabeledView`, the teacher's guidance for them, and — only criteria that ask for
labels, only through a label function — labels. True labels are read only when
``cfg.label_source == "true"`` (the supervised comparison).
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from ..config import PruneSettings
from ..data.views import LabeledSet, UnlabeledView
from ..device import device_of
from ..errors import PruningError
from ..registry import UnknownNameError
from ..surgery.complexity import count_complexity
from ..surgery.masks import Masks, apply_masks, get_masks
from ..teachers.base import Teacher
from .criteria import CRITERIA, CriterionSpec
from .inputs import ScoringSource, validate_scoring_settings
from .prunable import prunable_names
from .pruner import PruneOutcome, Pruner
from .report import LayerStat, PruneReport
from .selection import CollapseEvent, check_finite, density_schedule, select_masks


def criterion_spec(name: str) -> CriterionSpec:
    """The registered criterion, or a PruningError listing the known ones."""
    try:
        return CRITERIA.get(name)
    except UnknownNameError as exc:
        raise PruningError(str(exc)) from None


def needs_teacher(cfg: PruneSettings) -> bool:
    """Whether weight scoring with ``cfg`` asks the teacher anything (a CLI can skip loading one)."""
    return WEIGHTS.needs_teacher(cfg)


def validate_prune_config(cfg: PruneSettings) -> CriterionSpec:
    """Refuse settings that cannot give a meaningful mask, before any work is done."""
    spec = criterion_spec(cfg.prune.criterion)
    w = cfg.weights
    if not (math.isfinite(w.sparsity) and 0.0 <= w.sparsity < 1.0):
        raise PruningError(f"sparsity must be in [0, 1) (the fraction of weights removed), got {w.sparsity}")
    if w.rounds is not None and w.rounds < 1:
        raise PruningError(f"--rounds must be >= 1 (1 = one-shot), got {w.rounds}")
    if w.min_kept < 0:
        raise PruningError(f"--min-kept must be >= 0, got {w.min_kept}")
    if w.scope not in ("global", "layer"):
        raise PruningError(f"unknown scope {w.scope!r}; known: global, layer")
    validate_scoring_settings(cfg, spec)
    if spec.name.startswith("lnpt"):
        if w.prune_classifier and not cfg.score.score_ce_weight:
            raise PruningError(f"{spec.name} cannot rank the classifier's weights: L_fm does not reach them. "
                               "Set --score-ce-weight > 0 (pseudo-label CE) or keep the classifier dense "
                               "(--no-prune-classifier)")
    return spec


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    module = model.get_submodule(name.rpartition(".")[0])
    return getattr(module, name.rpartition(".")[2])


def prune_at_init(model: nn.Module, cfg: PruneSettings, data: UnlabeledView, teacher: Teacher | None, *,
                  seed: int = 0, labeled: LabeledSet | None = None) -> PruneReport:
    """Score ``model`` with ``cfg.prune.criterion``, select masks, attach them to ``model`` in place.

    Scoring batches: ``batches`` shuffled batches of ``score_batch_size`` drawn with
    ``seed``; teacher guidance is computed once per batch and reused by every round. With
    K rounds, densities follow ``d^(k/K)`` and each round rescores under the current mask.
    ``labeled`` is read only when ``label_source == "true"`` and the criterion uses labels.
    """
    return _mask(model, cfg, ScoringSource(data, teacher, labeled, seed))


def _mask(model: nn.Module, cfg: PruneSettings, source: ScoringSource) -> PruneReport:
    spec = validate_prune_config(cfg)
    source.check(model, spec, cfg)
    w = cfg.weights
    names = prunable_names(model, cfg.prune.prune_first, w.prune_classifier)
    if not names:
        raise PruningError("the model has no prunable Conv/Linear weights under these settings")
    rounds = w.rounds if w.rounds is not None else spec.default_rounds
    input_shape = source.data.info.input_shape
    before = count_complexity(model, input_shape)

    start = time.perf_counter()
    inputs, teacher_seconds = source.build(spec, cfg, device_of(model))
    existing = get_masks(model)
    masks: Masks = {n: existing[n].clone() if n in existing else torch.ones_like(_weight(model, n).detach())
                    for n in names}
    events: list[CollapseEvent] = []
    for r, density in enumerate(density_schedule(1.0 - w.sparsity, rounds), start=1):
        scores = spec.score(model, masks, inputs)
        check_finite(scores, f"criterion {spec.name} (round {r})")
        masks, new = select_masks(scores, density, w.scope, w.min_kept, previous=masks, round_index=r)
        events += new
    seconds = time.perf_counter() - start

    apply_masks(model, masks)
    after = count_complexity(model, input_shape)
    layers = [LayerStat(n, masks[n].numel(), int(masks[n].count_nonzero())) for n in names]
    return PruneReport(
        criterion=spec.name, scope=w.scope, target_sparsity=w.sparsity, rounds=rounds,
        batches=len(inputs.batches), score_batch_size=cfg.prune.score_batch_size,
        label_source=cfg.prune.label_source if spec.needs == "labels" else None, layers=layers,
        before=before, after=after, seconds=seconds, teacher_seconds=teacher_seconds,
        collapse_events=events, masks=masks)


class WeightPruner(Pruner):
    """Masks weights (unstructured): the paper's pruning at initialisation."""

    def criterion(self, cfg: PruneSettings) -> CriterionSpec:
        return criterion_spec(cfg.prune.criterion)

    def validate(self, cfg: PruneSettings) -> CriterionSpec:
        return validate_prune_config(cfg)

    def prune(self, model: nn.Module, cfg: PruneSettings, source: ScoringSource) -> PruneOutcome:
        report = _mask(model, cfg, source)
        return PruneOutcome(report.to_dict(), report.to_markdown(), report.sparsity)


WEIGHTS = WeightPruner()
