"""LNPT "dynamics" (ablation, docs/METHOD.md "Pruning criterion"): GraSP's gradient-flow score on the feature-map loss.

s = theta * (H g) with g and H the gradient and Hessian of L_fm; keeping the highest values
removes the weights whose removal least reduces the gradient flow of L_fm (GraSP removes the
highest -theta * Hg; same ranking). Scores are signed.
"""
from __future__ import annotations

import torch
from torch import nn

from ...surgery.masks import Masks
from .base import (
    ScoringInputs,
    hessian_gradient_product,
    register_criterion,
    scoring_copy,
)
from .lnpt import LnptScoreSettings, feature_map_loss


@register_criterion("lnpt-dynamics", needs="teacher", signed=True, settings=LnptScoreSettings)
def lnpt_dynamics(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    work, params = scoring_copy(model, masks, inputs)
    hg = hessian_gradient_product(params, feature_map_loss(work, inputs), len(inputs.batches))
    return {name: p.detach() * h for (name, p), h in zip(params.items(), hg)}
