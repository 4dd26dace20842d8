"""Magnitude: keep the largest |theta| at initialisation (the data-free baseline)."""
from __future__ import annotations

import torch
from torch import nn

from ...surgery.masks import Masks
from .base import ScoringInputs, register_criterion, scoring_copy


@register_criterion("magnitude")
def magnitude(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    _, params = scoring_copy(model, masks)
    return {name: p.detach().abs() for name, p in params.items()}
