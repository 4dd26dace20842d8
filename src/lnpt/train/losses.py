"""Training losses, chosen by name (``TrainConfig.loss``).

Every loss is an ``nn.Module`` (so an adapter it owns trains with the student) called with the
student's logits and features and a :class:`Batch`. ``needs_labels`` decides what the trainer
hands over: a label-free loss receives batches whose ``y`` is None, from an unlabeled view.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..features import FeatureAdapter, feature_distance
from ..registry import Registry
from ..teachers.base import Guidance


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor | None = None        # true labels: only for supervised losses
    guidance: Guidance | None = None     # teacher outputs: only for losses that need a teacher


@dataclass(frozen=True)
class LossContext:
    student_dim: int
    teacher_dim: int | None
    seed: int = 0


class TrainLoss(nn.Module):
    needs_labels: bool = False
    needs_teacher: bool = True

    def forward(self, logits: torch.Tensor, features: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def targets(self, batch: Batch) -> torch.Tensor:
        """The labels training accuracy is measured against (true or pseudo)."""
        if self.needs_labels:
            assert batch.y is not None
            return batch.y
        assert batch.guidance is not None
        return batch.guidance.pseudo_labels


LOSSES: Registry[Callable[[TrainConfig, LossContext], TrainLoss]] = Registry("loss")


class Supervised(TrainLoss):
    """Cross-entropy with true labels: the supervised comparison and teacher training."""

    needs_labels = True
    needs_teacher = False

    def forward(self, logits, features, batch):
        ce = F.cross_entropy(logits, batch.y)
        return ce, {"ce": ce.item()}


class PseudoLabel(TrainLoss):
    """Cross-entropy with the teacher's argmax labels (one-hot)."""

    def forward(self, logits, features, batch):
        ce = F.cross_entropy(logits, batch.guidance.pseudo_labels)
        return ce, {"ce": ce.item()}


class LnptLoss(TrainLoss):
    """CE(z_S, argmax z_T) + beta * D(smooth_tau(phi_S), smooth_tau(phi_T))  (SPEC.md §3)."""

    def __init__(self, cfg: TrainConfig, ctx: LossContext) -> None:
        super().__init__()
        self.beta, self.tau = cfg.beta, cfg.tau
        self.distance, self.smoothing = cfg.distance, cfg.smoothing
        self.adapter = FeatureAdapter(ctx.student_dim, ctx.teacher_dim or ctx.student_dim, ctx.seed)

    def forward(self, logits, features, batch):
        g = batch.guidance
        ce = F.cross_entropy(logits, g.pseudo_labels)
        fm = feature_distance(self.adapter(features), g.features, self.distance, self.smoothing, self.tau)
        return ce + self.beta * fm, {"ce": ce.item(), "fm": fm.item()}


class SoftTargetKD(TrainLoss):
    """Hinton et al.'s distillation: alpha * tau^2 KL(soft teacher || soft student) + (1-alpha) CE(pseudo)."""

    def __init__(self, cfg: TrainConfig, ctx: LossContext) -> None:
        super().__init__()
        self.tau, self.alpha = cfg.kd_tau, cfg.kd_alpha

    def forward(self, logits, features, batch):
        g = batch.guidance
        kd = F.kl_div(F.log_softmax(logits / self.tau, 1), F.log_softmax(g.logits / self.tau, 1),
                      reduction="batchmean", log_target=True) * self.tau ** 2
        ce = F.cross_entropy(logits, g.pseudo_labels)
        return self.alpha * kd + (1 - self.alpha) * ce, {"ce": ce.item(), "kd": kd.item()}


LOSSES.register("supervised")(lambda cfg, ctx: Supervised())
LOSSES.register("pseudo")(lambda cfg, ctx: PseudoLabel())
LOSSES.register("lnpt")(LnptLoss)
LOSSES.register("kd")(SoftTargetKD)


def create_loss(cfg: TrainConfig, ctx: LossContext) -> TrainLoss:
    return LOSSES.get(cfg.loss)(cfg, ctx)
