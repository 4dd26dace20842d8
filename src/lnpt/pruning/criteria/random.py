"""Random: uniform scores from the pipeline's seeded generator (the floor every criterion must beat)."""
from __future__ import annotations

import torch
from torch import nn

from ...surgery.masks import Masks
from .base import ScoringInputs, register_criterion


@register_criterion("random")
def random(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    # Drawn from the CPU generator whatever the device, so a seed gives the same mask anywhere.
    return {name: torch.rand(mask.shape, generator=inputs.generator, dtype=torch.float64).to(mask.device)
            for name, mask in masks.items()}
