"""SynFlow (Tanaka et al. 2020): data-free synaptic saliency, iterative (100 rounds) by default.

R = 1^T (prod_l |W_l|) 1, computed as the sum of the outputs of the network with every weight
and buffer replaced by its absolute value, on an all-ones input, in eval mode; score
|theta| * dR/d|theta|. Runs on a copy, so the scored model's weights and BatchNorm state are
exactly what they were. Computed in float32 (as the reference code) and redone in float64
when R or its gradient overflows (products over many layers of a deep network).
"""
from __future__ import annotations

import torch
from torch import nn

from ...surgery.masks import Masks
from .base import ScoringInputs, register_criterion, scoring_copy


@register_criterion("synflow", default_rounds=100)
def synflow(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    for dtype in (torch.float32, torch.float64):
        scores = _scores(model, masks, inputs.input_shape, dtype)
        if all(bool(torch.isfinite(s).all()) for s in scores.values()):
            break
    return scores


def _scores(model: nn.Module, masks: Masks, input_shape: tuple[int, int, int],
            dtype: torch.dtype) -> dict[str, torch.Tensor]:
    work, params = scoring_copy(model, masks)
    work.to(dtype).eval()
    with torch.no_grad():
        for t in work.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    x = torch.ones((1, *input_shape), dtype=dtype)
    plist = list(params.values())
    grads = torch.autograd.grad(work(x).sum(), plist, allow_unused=True)
    return {name: (p.detach() * (torch.zeros_like(p) if g is None else g)).abs()
            for (name, p), g in zip(params.items(), grads)}
