"""GraSP (Wang et al. 2020): keep the weights whose removal would most reduce gradient flow.

Score theta * (H g) of the cross-entropy on logits divided by a temperature of 200, as in
GraSP's and Synaptic-Flow's reference code (a high temperature keeps the Hessian informative
at initialisation). Higher = keep, which is GraSP's "remove the highest -theta * Hg". Labels
come from the label function, as for SNIP.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PruningError
from ...surgery.masks import Masks
from .base import (
    ScoringInputs,
    hessian_gradient_product,
    register_criterion,
    scoring_copy,
)

TEMPERATURE = 200.0


@register_criterion("grasp", needs="labels", signed=True)
def grasp(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    if inputs.labels is None:
        raise PruningError("grasp needs a label source (teacher pseudo-labels or true labels)")
    labels = inputs.labels
    work, params = scoring_copy(model, masks, inputs)
    hg = hessian_gradient_product(
        params, lambda i: F.cross_entropy(work(inputs.batches[i]) / TEMPERATURE, labels(i)), len(inputs.batches))
    return {name: p.detach() * h for (name, p), h in zip(params.items(), hg)}
