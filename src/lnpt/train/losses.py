"""Training losses, chosen by name (``TrainConfig.loss``).

Every loss is an ``nn.Module`` (so an adapter it owns trains with the student) called with the
student's logits and features and a :class:`Batch`. ``needs_labels`` decides what the trainer
hands over: a label-free loss receives batches whose ``y`` is None, from an unlabeled view.
Each registry entry declares the settings it reads: a frozen dataclass whose fields name
settings of the ``loss`` section (:class:`lnpt.config.LossConfig`); its factory receives an
instance. Loss settings a loss does not declare are refused when given for it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossConfig, TrainConfig
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


LossFactory = Callable[[Any, LossContext], TrainLoss]
"""Builds a loss from its settings (an instance of its declared class, or None) and context."""


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: how to build it from its settings, and which settings it reads."""

    name: str
    build: LossFactory
    settings: type | None = None


LOSSES: Registry[LossSpec] = Registry("loss")

#: Loss settings read by every run whatever its loss: the learning-gap metric's temperature.
READ_BY_EVERY_LOSS: frozenset[str] = frozenset({"tau"})


def register_loss(name: str, settings: type | None = None) -> Callable[[LossFactory], LossFactory]:
    """Decorator: ``@register_loss("kd", settings=KdSettings)`` on a class or factory taking
    ``(settings, ctx)`` (``settings`` is None when it declares none)."""

    def decorator(build: LossFactory) -> LossFactory:
        LOSSES.register(name)(LossSpec(name, build, settings))
        return build

    return decorator


@dataclass(frozen=True)
class LnptLossSettings:
    """What the LNPT loss reads."""

    beta: float
    tau: float
    distance: str
    smoothing: str


@dataclass(frozen=True)
class KdSettings:
    """What Hinton soft-target distillation reads."""

    kd_tau: float
    kd_alpha: float


@register_loss("supervised")
class Supervised(TrainLoss):
    """Cross-entropy with true labels: the supervised comparison and teacher training."""

    needs_labels = True
    needs_teacher = False

    def __init__(self, settings: None = None, ctx: LossContext | None = None) -> None:
        super().__init__()

    def forward(self, logits, features, batch):
        ce = F.cross_entropy(logits, batch.y)
        return ce, {"ce": ce.item()}


@register_loss("pseudo")
class PseudoLabel(TrainLoss):
    """Cross-entropy with the teacher's argmax labels (one-hot)."""

    def __init__(self, settings: None = None, ctx: LossContext | None = None) -> None:
        super().__init__()

    def forward(self, logits, features, batch):
        ce = F.cross_entropy(logits, batch.guidance.pseudo_labels)
        return ce, {"ce": ce.item()}


@register_loss("lnpt", settings=LnptLossSettings)
class LnptLoss(TrainLoss):
    """CE(z_S, argmax z_T) + beta * D(smooth_tau(phi_S), smooth_tau(phi_T))  (docs/METHOD.md, "Training loss")."""

    def __init__(self, cfg: LnptLossSettings, ctx: LossContext) -> None:
        super().__init__()
        self.beta, self.tau = cfg.beta, cfg.tau
        self.distance, self.smoothing = cfg.distance, cfg.smoothing
        self.adapter = FeatureAdapter(ctx.student_dim, ctx.teacher_dim or ctx.student_dim, ctx.seed)

    def forward(self, logits, features, batch):
        g = batch.guidance
        ce = F.cross_entropy(logits, g.pseudo_labels)
        fm = feature_distance(self.adapter(features), g.features, self.distance, self.smoothing, self.tau)
        return ce + self.beta * fm, {"ce": ce.item(), "fm": fm.item()}


@register_loss("kd", settings=KdSettings)
class SoftTargetKD(TrainLoss):
    """Hinton et al.'s distillation: alpha * tau^2 KL(soft teacher || soft student) + (1-alpha) CE(pseudo)."""

    def __init__(self, cfg: KdSettings, ctx: LossContext) -> None:
        super().__init__()
        self.tau, self.alpha = cfg.kd_tau, cfg.kd_alpha

    def forward(self, logits, features, batch):
        g = batch.guidance
        kd = F.kl_div(F.log_softmax(logits / self.tau, 1), F.log_softmax(g.logits / self.tau, 1),
                      reduction="batchmean", log_target=True) * self.tau ** 2
        ce = F.cross_entropy(logits, g.pseudo_labels)
        return self.alpha * kd + (1 - self.alpha) * ce, {"ce": ce.item(), "kd": kd.item()}


def loss_settings(spec: LossSpec, settings: LossConfig) -> Any:
    """The settings ``spec`` declares, read from the ``loss`` section (None: it reads none)."""
    if spec.settings is None:
        return None
    return spec.settings(**{f.name: getattr(settings, f.name) for f in fields(spec.settings)})


def create_loss(cfg: TrainConfig, ctx: LossContext, settings: LossConfig | None = None) -> TrainLoss:
    """The loss ``cfg.loss`` names, built with the settings it declares (defaults unless given)."""
    spec = LOSSES.get(cfg.loss)
    return spec.build(loss_settings(spec, settings or LossConfig()), ctx)


def unread_loss_setting(loss: str, name: str) -> str | None:
    """Why loss ``loss`` does not read loss setting ``name`` (one line naming the flag and the
    losses that read it), or None when it does (or ``name`` is no loss setting)."""
    if name not in {f.name for f in fields(LossConfig)} or name in READ_BY_EVERY_LOSS or loss not in LOSSES:
        return None
    spec = LOSSES.get(loss)
    if spec.settings is not None and name in {f.name for f in fields(spec.settings)}:
        return None
    readers = sorted(n for n in LOSSES.names()
                     if LOSSES.get(n).settings is not None and name in {f.name for f in fields(LOSSES.get(n).settings)})
    return (f"--{name.replace('_', '-')} is read by losses {', '.join(readers) or '(none)'}; "
            f"--loss {loss} does not read it")
