"""``prune_channels``: score a freshly initialised student's channels, remove the weakest ones.

The structured twin of :func:`lnpt.pruning.prune_at_init`, with the same label-free guarantee:
criteria get image batches from an :class:`UnlabeledView`, the teacher's guidance for them
and, only if they ask for labels, a label function. One-shot **[choice]**: the whole
ratio is removed after one scoring pass.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch
from torch import nn

from ...config import PruneConfig, check_choice
from ...data.views import LabeledSet, UnlabeledView
from ...errors import PruningError
from ...models import find_classifier
from ...surgery.channels import ChannelGraph, channel_counts
from ...surgery.complexity import count_complexity
from ...teachers.base import Teacher, check_compatible
from ..api import draw_scoring_batches, validate_scoring_settings
from ..criteria import LabelFn, ScoringInputs
from .criteria import ChannelCriterion, channel_criterion
from .report import ChannelStat, StructuredReport
from .selection import CHANNEL_SCOPES, global_ratio_for_macs, plan_removal


def _uses_teacher(crit: ChannelCriterion, cfg: PruneConfig) -> bool:
    return crit.needs == "teacher" or (crit.needs == "labels" and cfg.label_source == "teacher")


def validate_structured_config(cfg: PruneConfig) -> ChannelCriterion:
    """Refuse settings that cannot give a meaningful channel plan, before any work is done."""
    crit = channel_criterion(cfg.criterion)
    if not (math.isfinite(cfg.channel_ratio) and 0.0 <= cfg.channel_ratio < 1.0):
        raise PruningError(f"--channel-ratio must be in [0, 1) (the fraction of channels removed), "
                           f"got {cfg.channel_ratio}")
    if cfg.channel_scope not in CHANNEL_SCOPES:
        raise PruningError(f"unknown channel scope {cfg.channel_scope!r}; known: {', '.join(CHANNEL_SCOPES)}")
    if cfg.min_channels < 1:
        raise PruningError(f"--min-channels must be >= 1 (a layer with no channel cuts the network), "
                           f"got {cfg.min_channels}")
    if cfg.round_to < 1:
        raise PruningError(f"--round-to must be >= 1 (1 = no rounding), got {cfg.round_to}")
    _global_only(cfg, "channel_budget", ("channels", "macs"), "decides where a global ranking is cut")
    _global_only(cfg, "channel_norm", ("mean", "per-mac"), "makes layers comparable for a global ranking")
    check_choice(cfg, "fm_saliency", PruningError)
    validate_scoring_settings(cfg, crit.name)
    return crit


def _global_only(cfg: PruneConfig, field: str, known: tuple[str, ...], what: str) -> None:
    """Check a setting that only the global scope reads: a known value, and its first value
    (the default) unless the scope is global."""
    value, flag = getattr(cfg, field), "--" + field.replace("_", "-")
    if value not in known:
        raise PruningError(f"unknown {flag} {value!r}; known: {', '.join(known)}")
    if value != known[0] and cfg.channel_scope != "global":
        raise PruningError(f"{flag} {value} {what}; with --channel-scope {cfg.channel_scope} each layer "
                           f"loses the same fraction on its own. Add --channel-scope global, or drop {flag}")


def structured_needs_teacher(cfg: PruneConfig) -> bool:
    """Whether channel scoring with ``cfg`` asks the teacher anything."""
    return _uses_teacher(channel_criterion(cfg.criterion), cfg)


def _scoring_inputs(crit: ChannelCriterion, cfg: PruneConfig, data: UnlabeledView, teacher: Teacher | None,
                    labeled: LabeledSet | None, seed: int) -> tuple[ScoringInputs, float]:
    indices, batches = draw_scoring_batches(data, cfg, seed)
    t0 = time.perf_counter()
    guidance = tuple(teacher.guide(x) for x in batches) if _uses_teacher(crit, cfg) and teacher else None
    teacher_seconds = time.perf_counter() - t0
    labels: LabelFn | None = None
    if crit.needs == "labels":
        if cfg.label_source == "true":
            if labeled is None or len(labeled) != len(data):
                raise PruningError(f"label source 'true' needs the labeled set matching the scoring view "
                                   f"for {crit.name}")
            true = labeled.labels
            labels = lambda i: true[indices[i]]  # noqa: E731
        else:
            assert guidance is not None
            pseudo = guidance
            labels = lambda i: pseudo[i].pseudo_labels  # noqa: E731
    return ScoringInputs(batches, guidance, labels, data.info.input_shape, cfg,
                         torch.Generator().manual_seed(seed)), teacher_seconds


def _conv_linear_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)))


def _plan_pricer(model: nn.Module, input_shape: tuple[int, ...]) -> Callable[[dict[str, list[int]]], int]:
    """MACs of ``model`` after a removal plan, measured on a copy (any architecture the channel
    graph handles, no cost model to keep in step with it)."""
    def price(plan: dict[str, list[int]]) -> int:
        work = copy.deepcopy(model)
        ChannelGraph(work, input_shape).remove(plan)
        return count_complexity(work, input_shape).macs

    return price


def prune_channels(model: nn.Module, cfg: PruneConfig, data: UnlabeledView, teacher: Teacher | None, *,
                   seed: int = 0, labeled: LabeledSet | None = None) -> StructuredReport:
    """Score ``model``'s channels with ``cfg.criterion`` and remove ``cfg.channel_ratio`` of them
    in place (coupled layers stay consistent); the report carries the history to rebuild it."""
    crit = validate_structured_config(cfg)
    info = data.info
    if find_classifier(model).out_features != info.num_classes:
        raise PruningError(f"the student has {find_classifier(model).out_features} outputs but dataset "
                           f"{info.name} has {info.num_classes} classes")
    if _uses_teacher(crit, cfg):
        if teacher is None:
            raise PruningError(f"channel criterion {crit.name} needs a teacher; pass one")
        check_compatible(teacher.info, info)
    start = time.perf_counter()
    graph = ChannelGraph(model, info.input_shape)
    groups = graph.groups(prune_first=cfg.prune_first)
    if not groups:
        raise PruningError("the model has no prunable channel groups under these settings")
    before, counts_before = count_complexity(model, info.input_shape), channel_counts(model)
    weights_before = _conv_linear_weights(model)
    inputs, teacher_seconds = _scoring_inputs(crit, cfg, data, teacher, labeled, seed)
    scores = crit.score(model, groups, inputs)
    ratio, ranked, normalise = cfg.channel_ratio, scores, True
    price = _plan_pricer(model, info.input_shape)
    if cfg.channel_scope == "global" and cfg.channel_norm == "per-mac":
        # One channel's price in each group, at the dense widths: what removing it saves.
        ranked = {g.root: scores[g.root].to(torch.float64) / max(before.macs - price({g.root: [0]}), 1)
                  for g in groups}
        normalise = False
    if cfg.channel_budget == "macs":
        target = price(plan_removal(groups, scores, ratio, "layer", cfg.min_channels, cfg.round_to))
        ratio = global_ratio_for_macs(groups, ranked, target, price, cfg.min_channels, cfg.round_to,
                                      normalise=normalise)
    plan = plan_removal(groups, ranked, ratio, cfg.channel_scope, cfg.min_channels, cfg.round_to, normalise)
    history = graph.remove(plan)
    seconds = time.perf_counter() - start
    counts_after = channel_counts(model)
    layers = [ChannelStat(n, *counts_before[n][:1], counts_after[n][0], counts_before[n][1], counts_after[n][1])
              for n in counts_before]
    return StructuredReport(
        criterion=crit.name, form=crit.form, scope=cfg.channel_scope, channel_ratio=cfg.channel_ratio,
        budget=cfg.channel_budget if cfg.channel_scope == "global" else "layer-wise", global_ratio=ratio,
        norm=cfg.channel_norm if cfg.channel_scope == "global" else None,
        min_channels=cfg.min_channels, round_to=cfg.round_to, batches=len(inputs.batches),
        score_batch_size=cfg.score_batch_size, label_source=cfg.label_source if crit.needs == "labels" else None,
        groups=len(groups), layers=layers, before=before, after=count_complexity(model, info.input_shape),
        weights_before=weights_before, weights_after=_conv_linear_weights(model), seconds=seconds,
        teacher_seconds=teacher_seconds, history=history)
