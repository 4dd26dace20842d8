"""``lnpt-fm``: the LNPT feature-map saliency of a channel, |a * dL_fm/da| summed over positions.

A first-order estimate of how much zeroing channel ``a`` changes the learning gap L_fm
(docs/METHOD.md "Pruning criterion", structured variant). **[choice]** ``a`` is the channel as the next layer sees it
before the non-linearity: the BatchNorm output when the group has one, else the conv/linear
output. (Right after a conv followed by batch-statistics BatchNorm the saliency would be
meaningless: BatchNorm undoes any rescaling of the conv output.) An in-place ReLU after the
hooked output gives the same products, because a*dL/da vanishes wherever ReLU zeroes a.
Per channel: |a * g| summed over positions (``--fm-saliency abs-sum``, the default) or
|sum of a * g over positions| (``sum-abs``: the first-order change of L_fm when the channel is
zeroed in that sample, as Molchanov et al.'s Taylor criterion; signs of different positions
cancel), averaged over samples and scoring batches, then summed over the group's members
(every BatchNorm feeding one residual stream).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ...surgery.channels import ChannelGroup
from ..criteria import ScoringInputs
from ..criteria.base import scoring_copy
from ..criteria.lnpt import LnptScoreSettings, feature_map_loss
from .criteria import aggregate, register_channel_criterion


@dataclass(frozen=True)
class FeatureMapSettings(LnptScoreSettings):
    """lnpt-fm reads the LNPT score settings and how a channel's saliency is summed."""

    fm_saliency: str


def _hooked(groups: Sequence[ChannelGroup]) -> list[str]:
    names: list[str] = []
    for g in groups:
        members = g.members("norm") or g.members("producer")
        names += [m.module for m in members]
    return list(dict.fromkeys(names))


@register_channel_criterion("lnpt-fm", needs="teacher", settings=FeatureMapSettings)
def lnpt_feature_map(model: nn.Module, groups: Sequence[ChannelGroup],
                     inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    work, _ = scoring_copy(model, {}, inputs)
    names = _hooked(groups)
    acts: dict[str, torch.Tensor] = {}
    handles = [work.get_submodule(n).register_forward_hook(
        lambda mod, inp, out, n=n: acts.__setitem__(n, out)) for n in names]
    # Gradients flow from the input, not from weights: every activation joins the graph
    # while no parameter gradient is computed.
    inputs = dataclasses.replace(inputs, batches=tuple(b.detach().requires_grad_(True) for b in inputs.batches))
    loss = feature_map_loss(work, inputs)
    cancel = inputs.settings.fm_saliency == "sum-abs"
    total: dict[str, torch.Tensor] = {}
    try:
        for i in range(len(inputs.batches)):
            acts.clear()
            value = loss(i)
            used = [n for n in names if n in acts and acts[n].requires_grad]
            grads = torch.autograd.grad(value, [acts[n] for n in used], allow_unused=True)
            for n, g in zip(used, grads):
                if g is None:
                    continue
                a = acts[n].detach()
                positions = [d for d in range(2, a.dim())]
                prod = a * g
                if cancel and positions:
                    prod = prod.sum(dim=positions)
                per_channel = prod.abs().sum(dim=[d for d in range(prod.dim()) if d != 1]).to(torch.float64) / a.shape[0]
                total[n] = total[n] + per_channel if n in total else per_channel
    finally:
        for h in handles:
            h.remove()
    per_module = {n: t / max(len(inputs.batches), 1) for n, t in total.items()}
    return aggregate(groups, per_module)
