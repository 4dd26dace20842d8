"""LNPT: feature-map-gradient saliency s_j = |theta_j * dL_fm/dtheta_j| (docs/METHOD.md, "Pruning criterion").

L_fm is the distance between the student's smoothed penultimate features and the teacher's,
on unlabeled scoring batches; its gradient at initialisation is the cheap stand-in for the
feature Jacobian that links weights to the learning gap. Teacher features come from the
guidance computed once per batch. When the feature sizes differ (or always, with
``--score-adapter fit``), a linear adapter fitted by ridge least squares on each scoring batch
maps the student's features to the teacher's; with equal sizes and ``auto`` the student's
channel i is compared with the teacher's channel i, a pairing that a random student knows
nothing of.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...device import device_of
from ...errors import PruningError
from ...features import FeatureAdapter, feature_distance
from ...models import feature_dim, forward_with_features
from ...surgery.masks import Masks
from .base import ScoringInputs, accumulated_grad, register_criterion, scoring_copy


@dataclass(frozen=True)
class LnptScoreSettings:
    """The ``score`` settings every criterion built on L_fm reads (lnpt, lnpt-dynamics, lnpt-fm)."""

    score_tau: float
    score_distance: str
    score_smoothing: str
    score_adapter: str
    score_ce_weight: float

    def check(self) -> None:
        """Refuse a smoothing the distance cannot use and a temperature that divides by zero."""
        if self.score_distance == "kl" and self.score_smoothing != "softmax":
            raise PruningError("the KL score distance needs softmax smoothing; use --score-distance mse "
                               f"with --score-smoothing {self.score_smoothing}")
        if not self.score_tau > 0:
            raise PruningError(f"--score-tau must be > 0, got {self.score_tau}")


def feature_map_loss(model: nn.Module, inputs: ScoringInputs) -> Callable[[int], torch.Tensor]:
    """``i -> L_fm`` on scoring batch ``i`` (plus ``score_ce_weight`` x pseudo-label CE)."""
    if inputs.guidance is None:
        raise PruningError("the lnpt criterion needs teacher guidance (pass a teacher)")
    cfg = inputs.settings
    if not isinstance(cfg, LnptScoreSettings):
        raise PruningError("L_fm needs the LNPT score settings: register the criterion with "
                           "settings=LnptScoreSettings (or a subclass)")
    teacher_dim = inputs.guidance[0].features.shape[1]
    adapter = FeatureAdapter(feature_dim(model), teacher_dim, always=cfg.score_adapter == "fit").to(device_of(model))
    for p in adapter.parameters():
        p.requires_grad_(False)

    def loss(i: int) -> torch.Tensor:
        g = inputs.guidance[i]  # type: ignore[index]
        logits, feats = forward_with_features(model, inputs.batches[i])
        adapter.fit_least_squares(feats.detach(), g.features)
        value = feature_distance(adapter(feats), g.features, cfg.score_distance, cfg.score_smoothing, cfg.score_tau)
        if cfg.score_ce_weight:
            value = value + cfg.score_ce_weight * F.cross_entropy(logits, g.pseudo_labels)
        return value

    return loss


# Iterative by default: at 99% sparsity one-shot scoring (LNPT and SNIP alike) left LeNet-5's
# first FC layer 26 of 30,720 weights and a network that never trained, while 10 rounds of
# rescoring under the current mask trained to 73% (docs/RESULTS.md, "Tuning"). --rounds 1
# gives the one-shot criterion.
@register_criterion("lnpt", needs="teacher", default_rounds=10, settings=LnptScoreSettings)
def lnpt(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    work, params = scoring_copy(model, masks, inputs)
    grads = accumulated_grad(params, feature_map_loss(work, inputs), len(inputs.batches))
    return {name: (p.detach() * g).abs() for (name, p), g in zip(params.items(), grads)}
