"""Channel criteria: one score per channel of each coupled group (higher = keep).

Two sources, one lookup (:func:`channel_criterion`):

- *Filter sums* of the unstructured criteria in :data:`lnpt.pruning.criteria.CRITERIA`: a
  channel's score is the sum of its filter's weight scores (docs/METHOD.md, "Pruning criterion"), summed over every
  layer that writes the channel (a residual stream has several). This gives ``lnpt``, ``snip``
  (pseudo-label CE), ``magnitude`` (the L1 norm of the filter, Li et al. 2017), ``grasp`` and
  ``synflow`` channel forms without a second implementation: a new weight criterion gets its
  channel form for free.
- *Native* channel criteria registered here, for scores that are not filter sums: ``random``
  (one uniform draw per channel) and ``lnpt-fm`` (feature-map saliency, :mod:`.feature_map`).

Adding one: write a function ``(model, groups, inputs) -> {group root: scores}`` and decorate
it with ``@register_channel_criterion("name", needs=..., settings=...)``; import its module in
``__init__``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from ...errors import PruningError
from ...registry import Registry
from ...surgery.channels import ChannelGroup
from ..criteria import CRITERIA, CriterionSpec, ScoringInputs
from ..criteria.base import Needs


class ChannelScoreFn(Protocol):
    def __call__(self, model: nn.Module, groups: Sequence[ChannelGroup],
                 inputs: ScoringInputs) -> dict[str, torch.Tensor]:
        ...


@dataclass(frozen=True)
class ChannelCriterion:
    name: str
    score: ChannelScoreFn
    needs: Needs = "none"
    form: str = "native"   # "native" or "filter-sum of <criterion>"
    settings: type | None = None  # the score settings it reads (see CriterionSpec.settings)


CHANNEL_CRITERIA: Registry[ChannelCriterion] = Registry("channel criterion")


def register_channel_criterion(name: str, *, needs: Needs = "none",
                               settings: type | None = None) -> Callable[[ChannelScoreFn], ChannelScoreFn]:
    def decorator(fn: ChannelScoreFn) -> ChannelScoreFn:
        CHANNEL_CRITERIA.register(name)(ChannelCriterion(name, fn, needs, "native", settings))
        return fn

    return decorator


def aggregate(groups: Sequence[ChannelGroup], per_module: Mapping[str, torch.Tensor],
              kind: str | None = None) -> dict[str, torch.Tensor]:
    """Per-module channel scores -> per-group scores: the sum over the group's output members
    (of ``kind``, or all kinds) through each member's channel -> root-channel map."""
    out = {}
    for g in groups:
        acc = torch.zeros(g.size, dtype=torch.float64)  # on the CPU: channel plans are made there
        for m in g.outputs:
            s = per_module.get(m.module)
            if s is None or (kind is not None and m.kind != kind):
                continue
            acc.index_add_(0, torch.tensor(m.roots), s.detach().to("cpu", torch.float64)[list(m.channels)])
        out[g.root] = acc
    return out


def _weight_of(model: nn.Module, module: str) -> torch.Tensor:
    return model.get_submodule(module).weight


def filter_sum(spec: CriterionSpec) -> ChannelCriterion:
    """The channel form of a weight criterion: sum its weight scores over each output filter."""

    def score(model: nn.Module, groups: Sequence[ChannelGroup], inputs: ScoringInputs) -> dict[str, torch.Tensor]:
        producers = sorted({m.module for g in groups for m in g.members("producer")})
        masks = {f"{name}.weight": torch.ones_like(_weight_of(model, name).detach()) for name in producers}
        weight_scores = spec.score(model, masks, inputs)
        per_module = {name: weight_scores[f"{name}.weight"].reshape(len(masks[f"{name}.weight"]), -1).sum(1)
                      for name in producers}
        return aggregate(groups, per_module, "producer")

    return ChannelCriterion(spec.name, score, spec.needs, f"filter-sum of {spec.name}", spec.settings)


def channel_criterion(name: str) -> ChannelCriterion:
    """A native channel criterion, else the filter-sum form of the weight criterion ``name``."""
    if name in CHANNEL_CRITERIA:
        return CHANNEL_CRITERIA.get(name)
    if name in CRITERIA:
        return filter_sum(CRITERIA.get(name))
    raise PruningError(f"unknown channel criterion {name!r}; known: {', '.join(channel_criterion_names())}")


def channel_criterion_names() -> list[str]:
    return sorted(set(CHANNEL_CRITERIA.names()) | set(CRITERIA.names()))


@register_channel_criterion("random")
def random_channels(model: nn.Module, groups: Sequence[ChannelGroup], inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    """Uniform scores per channel from the pipeline's seeded generator: the floor to beat."""
    return {g.root: torch.rand(g.size, generator=inputs.generator, dtype=torch.float64) for g in groups}
