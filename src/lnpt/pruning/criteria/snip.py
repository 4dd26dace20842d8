"""SNIP (Lee et al. 2019): connection sensitivity |theta * dCE/dtheta| at initialisation.

Its labels come from the label function: the teacher's pseudo-labels in label-free mode, the
true labels only for the supervised comparison. Gradients are averaged over the scoring
batches before the product, as for LNPT, so the two differ only in the loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PruningError
from ...surgery.masks import Masks
from .base import ScoringInputs, accumulated_grad, register_criterion, scoring_copy


@register_criterion("snip", needs="labels")
def snip(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    if inputs.labels is None:
        raise PruningError("snip needs a label source (teacher pseudo-labels or true labels)")
    labels = inputs.labels
    work, params = scoring_copy(model, masks, inputs)
    grads = accumulated_grad(params, lambda i: F.cross_entropy(work(inputs.batches[i]), labels(i)),
                             len(inputs.batches))
    return {name: (p.detach() * g).abs() for (name, p), g in zip(params.items(), grads)}
