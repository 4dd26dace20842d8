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

from ...config import PruneSettings, check_choice
from ...data.views import LabeledSet, UnlabeledView
from ...device import device_of
from ...errors import PruningError
from ...surgery.channels import ChannelGraph, ChannelGroup, channel_counts
from ...surgery.complexity import count_complexity
from ...surgery.rebuild import structured_extra
from ...teachers.base import Teacher
from ..inputs import ScoringSource, validate_scoring_settings
from ..pruner import PruneOutcome, Pruner
from .criteria import ChannelCriterion, channel_criterion
from .report import ChannelStat, StructuredReport
from .selection import CHANNEL_SCOPES, global_ratio_for_macs, plan_removal


def validate_structured_config(cfg: PruneSettings) -> ChannelCriterion:
    """Refuse settings that cannot give a meaningful channel plan, before any work is done."""
    crit = channel_criterion(cfg.prune.criterion)
    c = cfg.channels
    if not (math.isfinite(c.channel_ratio) and 0.0 <= c.channel_ratio < 1.0):
        raise PruningError(f"--channel-ratio must be in [0, 1) (the fraction of channels removed), "
                           f"got {c.channel_ratio}")
    if c.channel_scope not in CHANNEL_SCOPES:
        raise PruningError(f"unknown channel scope {c.channel_scope!r}; known: {', '.join(CHANNEL_SCOPES)}")
    if c.min_channels < 1:
        raise PruningError(f"--min-channels must be >= 1 (a layer with no channel cuts the network), "
                           f"got {c.min_channels}")
    if c.round_to < 1:
        raise PruningError(f"--round-to must be >= 1 (1 = no rounding), got {c.round_to}")
    _global_only(cfg, "channel_budget", ("channels", "macs"), "decides where a global ranking is cut")
    _global_only(cfg, "channel_norm", ("mean", "per-mac"), "makes layers comparable for a global ranking")
    check_choice(cfg.score, "fm_saliency", PruningError)
    validate_scoring_settings(cfg, crit)
    return crit


def _global_only(cfg: PruneSettings, field: str, known: tuple[str, ...], what: str) -> None:
    """Check a setting that only the global scope reads: a known value, and its first value
    (the default) unless the scope is global."""
    value, flag = getattr(cfg.channels, field), "--" + field.replace("_", "-")
    if value not in known:
        raise PruningError(f"unknown {flag} {value!r}; known: {', '.join(known)}")
    if value != known[0] and cfg.channels.channel_scope != "global":
        raise PruningError(f"{flag} {value} {what}; with --channel-scope {cfg.channels.channel_scope} each layer "
                           f"loses the same fraction on its own. Add --channel-scope global, or drop {flag}")


def structured_needs_teacher(cfg: PruneSettings) -> bool:
    """Whether channel scoring with ``cfg`` asks the teacher anything."""
    return CHANNELS.needs_teacher(cfg)


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


def prune_channels(model: nn.Module, cfg: PruneSettings, data: UnlabeledView, teacher: Teacher | None, *,
                   seed: int = 0, labeled: LabeledSet | None = None) -> StructuredReport:
    """Score ``model``'s channels with ``cfg.prune.criterion`` and remove ``channel_ratio`` of them
    in place (coupled layers stay consistent); the report carries the history to rebuild it."""
    return _remove(model, cfg, ScoringSource(data, teacher, labeled, seed))


def _remove(model: nn.Module, cfg: PruneSettings, source: ScoringSource) -> StructuredReport:
    crit = validate_structured_config(cfg)
    source.check(model, crit, cfg)
    info = source.data.info
    start = time.perf_counter()
    graph = ChannelGraph(model, info.input_shape)
    groups = graph.groups(prune_first=cfg.prune.prune_first)
    if not groups:
        raise PruningError("the model has no prunable channel groups under these settings")
    before, counts_before = count_complexity(model, info.input_shape), channel_counts(model)
    weights_before = _conv_linear_weights(model)
    inputs, teacher_seconds = source.build(crit, cfg, device_of(model))
    scores = crit.score(model, groups, inputs)
    plan, ratio = _plan(model, cfg, groups, scores, before.macs, info.input_shape)
    history = graph.remove(plan)
    seconds = time.perf_counter() - start
    counts_after = channel_counts(model)
    layers = [ChannelStat(n, *counts_before[n][:1], counts_after[n][0], counts_before[n][1], counts_after[n][1])
              for n in counts_before]
    c, glob = cfg.channels, cfg.channels.channel_scope == "global"
    return StructuredReport(
        criterion=crit.name, form=crit.form, scope=c.channel_scope, channel_ratio=c.channel_ratio,
        budget=c.channel_budget if glob else "layer-wise", global_ratio=ratio,
        norm=c.channel_norm if glob else None, min_channels=c.min_channels, round_to=c.round_to,
        batches=len(inputs.batches), score_batch_size=cfg.prune.score_batch_size,
        label_source=cfg.prune.label_source if crit.needs == "labels" else None,
        groups=len(groups), layers=layers, before=before, after=count_complexity(model, info.input_shape),
        weights_before=weights_before, weights_after=_conv_linear_weights(model), seconds=seconds,
        teacher_seconds=teacher_seconds, history=history)


def _plan(model: nn.Module, cfg: PruneSettings, groups: list[ChannelGroup], scores: dict[str, torch.Tensor],
          dense_macs: int, input_shape: tuple[int, ...]) -> tuple[dict[str, list[int]], float]:
    """The removal plan for ``scores`` under the channel settings, and the global ratio it used."""
    c = cfg.channels
    ratio, ranked, normalise = c.channel_ratio, scores, True
    price = _plan_pricer(model, input_shape)
    if c.channel_scope == "global" and c.channel_norm == "per-mac":
        # One channel's price in each group, at the dense widths: what removing it saves.
        ranked = {g.root: scores[g.root].to(torch.float64) / max(dense_macs - price({g.root: [0]}), 1)
                  for g in groups}
        normalise = False
    if c.channel_budget == "macs":
        target = price(plan_removal(groups, scores, ratio, "layer", c.min_channels, c.round_to))
        ratio = global_ratio_for_macs(groups, ranked, target, price, c.min_channels, c.round_to,
                                      normalise=normalise)
    plan = plan_removal(groups, ranked, ratio, c.channel_scope, c.min_channels, c.round_to, normalise)
    return plan, ratio


class ChannelPruner(Pruner):
    """Removes whole channels physically: the network really shrinks."""

    def criterion(self, cfg: PruneSettings) -> ChannelCriterion:
        return channel_criterion(cfg.prune.criterion)

    def validate(self, cfg: PruneSettings) -> ChannelCriterion:
        return validate_structured_config(cfg)

    def prune(self, model: nn.Module, cfg: PruneSettings, source: ScoringSource) -> PruneOutcome:
        report = _remove(model, cfg, source)
        return PruneOutcome(report.to_dict(), report.to_markdown(), report.sparsity,
                            structured_extra(model, report.history))


CHANNELS = ChannelPruner()
