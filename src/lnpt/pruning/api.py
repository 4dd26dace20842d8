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

from ..config import PruneConfig, check_choice
from ..data.views import LabeledSet, UnlabeledView
from ..errors import PruningError
from ..models import find_classifier
from ..registry import UnknownNameError
from ..surgery.complexity import count_complexity
from ..surgery.masks import Masks, apply_masks, get_masks
from ..teachers.base import Teacher, check_compatible
from .criteria import CRITERIA, CriterionSpec, LabelFn, ScoringInputs
from .prunable import prunable_names
from .report import LayerStat, PruneReport
from .selection import CollapseEvent, check_finite, density_schedule, select_masks


def criterion_spec(name: str) -> CriterionSpec:
    """The registered criterion, or a PruningError listing the known ones."""
    try:
        return CRITERIA.get(name)
    except UnknownNameError as exc:
        raise PruningError(str(exc)) from None


def _uses_teacher(spec: CriterionSpec, cfg: PruneConfig) -> bool:
    return spec.needs == "teacher" or (spec.needs == "labels" and cfg.label_source == "teacher")


def needs_teacher(cfg: PruneConfig) -> bool:
    """Whether scoring with ``cfg`` asks the teacher anything (so a CLI can skip loading one)."""
    return _uses_teacher(criterion_spec(cfg.criterion), cfg)


def validate_scoring_settings(cfg: PruneConfig, criterion: str) -> None:
    """The checks weight and channel pruning share: how scoring batches are drawn and scored."""
    if cfg.batches < 1:
        raise PruningError(f"zero scoring batches: --batches must be >= 1, got {cfg.batches}")
    if cfg.score_batch_size < 1:
        raise PruningError(f"--score-batch-size must be >= 1, got {cfg.score_batch_size}")
    check_choice(cfg, "score_bn", PruningError)
    check_choice(cfg, "score_adapter", PruningError)
    if cfg.label_source not in ("teacher", "true"):
        raise PruningError(f"unknown label source {cfg.label_source!r}; known: teacher, true")
    if criterion.startswith("lnpt"):
        if cfg.score_distance == "kl" and cfg.score_smoothing != "softmax":
            raise PruningError("the KL score distance needs softmax smoothing; use --score-distance mse "
                               f"with --score-smoothing {cfg.score_smoothing}")
        if not cfg.score_tau > 0:
            raise PruningError(f"--score-tau must be > 0, got {cfg.score_tau}")


def validate_prune_config(cfg: PruneConfig) -> CriterionSpec:
    """Refuse settings that cannot give a meaningful mask, before any work is done."""
    spec = criterion_spec(cfg.criterion)
    if not (math.isfinite(cfg.sparsity) and 0.0 <= cfg.sparsity < 1.0):
        raise PruningError(f"sparsity must be in [0, 1) (the fraction of weights removed), got {cfg.sparsity}")
    if cfg.rounds is not None and cfg.rounds < 1:
        raise PruningError(f"--rounds must be >= 1 (1 = one-shot), got {cfg.rounds}")
    if cfg.min_kept < 0:
        raise PruningError(f"--min-kept must be >= 0, got {cfg.min_kept}")
    if cfg.scope not in ("global", "layer"):
        raise PruningError(f"unknown scope {cfg.scope!r}; known: global, layer")
    validate_scoring_settings(cfg, spec.name)
    if spec.name.startswith("lnpt"):
        if cfg.prune_classifier and not cfg.score_ce_weight:
            raise PruningError(f"{spec.name} cannot rank the classifier's weights: L_fm does not reach them. "
                               "Set --score-ce-weight > 0 (pseudo-label CE) or keep the classifier dense "
                               "(--no-prune-classifier)")
    return spec


def _check_inputs(model: nn.Module, spec: CriterionSpec, cfg: PruneConfig, data: UnlabeledView,
                  teacher: Teacher | None, labeled: LabeledSet | None) -> None:
    info = data.info
    out = find_classifier(model).out_features
    if out != info.num_classes:
        raise PruningError(f"the student has {out} outputs but dataset {info.name} has {info.num_classes} classes")
    if teacher is not None:
        check_compatible(teacher.info, info)
    if _uses_teacher(spec, cfg) and teacher is None:
        raise PruningError(f"criterion {spec.name} needs a teacher"
                           + (" (its pseudo-labels)" if spec.needs == "labels" else "") + "; pass one")
    if spec.needs == "labels" and cfg.label_source == "true":
        if labeled is None:
            raise PruningError(f"label source 'true' needs the labeled set for {spec.name}")
        if len(labeled) != len(data):
            raise PruningError(f"the labeled set ({len(labeled)}) and the scoring view ({len(data)}) differ "
                               "in length; pass labeled=<set> with data=<set>.unlabeled()")


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    module = model.get_submodule(name.rpartition(".")[0])
    return getattr(module, name.rpartition(".")[2])


def draw_scoring_batches(data: UnlabeledView, cfg: PruneConfig,
                         seed: int) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The unlabeled scoring batches (and their sample indices), drawn reproducibly from ``seed``;
    shared by weight and channel scoring so both see the same data."""
    gen = torch.Generator().manual_seed(seed)
    drawn = list(data.batches(cfg.score_batch_size, shuffle=True, generator=gen, limit=cfg.batches))
    if not drawn:
        raise PruningError("zero scoring batches: the unlabeled scoring view is empty")
    return [index for index, _ in drawn], tuple(x for _, x in drawn)


def prune_at_init(model: nn.Module, cfg: PruneConfig, data: UnlabeledView, teacher: Teacher | None, *,
                  seed: int = 0, labeled: LabeledSet | None = None) -> PruneReport:
    """Score ``model`` with ``cfg.criterion``, select masks, attach them to ``model`` in place.

    Scoring batches: ``cfg.batches`` shuffled batches of ``cfg.score_batch_size`` drawn with
    ``seed``; teacher guidance is computed once per batch and reused by every round. With
    K rounds, densities follow ``d^(k/K)`` and each round rescores under the current mask.
    ``labeled`` is read only when ``cfg.label_source == "true"`` and the criterion uses labels.
    """
    spec = validate_prune_config(cfg)
    _check_inputs(model, spec, cfg, data, teacher, labeled)
    names = prunable_names(model, cfg.prune_first, cfg.prune_classifier)
    if not names:
        raise PruningError("the model has no prunable Conv/Linear weights under these settings")
    rounds = cfg.rounds if cfg.rounds is not None else spec.default_rounds
    before = count_complexity(model, data.info.input_shape)

    start = time.perf_counter()
    indices, batches = draw_scoring_batches(data, cfg, seed)

    guidance = None
    t0 = time.perf_counter()
    if _uses_teacher(spec, cfg):
        assert teacher is not None
        guidance = tuple(teacher.guide(x) for x in batches)
    teacher_seconds = time.perf_counter() - t0

    labels: LabelFn | None = None
    if spec.needs == "labels":
        if cfg.label_source == "true":
            assert labeled is not None
            true = labeled.labels
            labels = lambda i: true[indices[i]]  # noqa: E731
        else:
            assert guidance is not None
            pseudo = guidance
            labels = lambda i: pseudo[i].pseudo_labels  # noqa: E731
    inputs = ScoringInputs(batches, guidance, labels, data.info.input_shape, cfg,
                           torch.Generator().manual_seed(seed))

    existing = get_masks(model)
    masks: Masks = {n: existing[n].clone() if n in existing else torch.ones_like(_weight(model, n).detach())
                    for n in names}
    events: list[CollapseEvent] = []
    for r, density in enumerate(density_schedule(1.0 - cfg.sparsity, rounds), start=1):
        scores = spec.score(model, masks, inputs)
        check_finite(scores, f"criterion {spec.name} (round {r})")
        masks, new = select_masks(scores, density, cfg.scope, cfg.min_kept, previous=masks, round_index=r)
        events += new
    seconds = time.perf_counter() - start

    apply_masks(model, masks)
    after = count_complexity(model, data.info.input_shape)
    layers = [LayerStat(n, masks[n].numel(), int(masks[n].count_nonzero())) for n in names]
    return PruneReport(
        criterion=spec.name, scope=cfg.scope, target_sparsity=cfg.sparsity, rounds=rounds,
        batches=len(batches), score_batch_size=cfg.score_batch_size,
        label_source=cfg.label_source if spec.needs == "labels" else None, layers=layers,
        before=before, after=after, seconds=seconds, teacher_seconds=teacher_seconds,
        collapse_events=events, masks=masks)
