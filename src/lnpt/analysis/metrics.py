"""Learning gap, weight distance and teacher agreement (docs/METHOD.md, "Learning gap and weight distance").

The learning gap is the distance between the student's and the teacher's penultimate features
on held-out unlabeled inputs; the weight distance is how far the weights moved from their
initialisation. The paper's claim is that the first tracks generalization and the second does
not ("weight escape"), which :mod:`lnpt.analysis.correlate` tests.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..device import device_of
from ..features import feature_distance
from ..models import forward_with_features
from ..surgery.masks import get_masks

if TYPE_CHECKING:  # lnpt.train imports this module (its Evaluator); importing it back here
    from ..features import FeatureAdapter  # at load time would be a cycle.


def effective_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters as the forward pass sees them (masked weights under their plain name)."""
    out = {}
    masks = get_masks(model)
    for name, p in model.named_parameters():
        if name.endswith("_orig"):
            base = name[: -len("_orig")]
            out[base] = (p * masks[base]).detach()
        else:
            out[name] = p.detach()
    return out


def weight_distance(model: nn.Module, init: dict[str, torch.Tensor]) -> dict[str, float]:
    """``||theta_t - theta_0||_2`` for the whole net ("total"), its relative form
    ("relative" = distance / ||theta_0||) and per parameter tensor ("layer/<name>")."""
    now = effective_weights(model)
    total_sq, init_sq, out = 0.0, 0.0, {}
    for name, w in now.items():
        d = (w - init[name].to(w.device)).pow(2).sum().item()
        total_sq += d
        init_sq += init[name].pow(2).sum().item()
        out[f"layer/{name}"] = d ** 0.5
    out["total"] = total_sq ** 0.5
    out["relative"] = total_sq ** 0.5 / max(init_sq ** 0.5, 1e-12)
    return out


@torch.no_grad()
def learning_gap(model: nn.Module, inputs: list[torch.Tensor], teacher_features: list[torch.Tensor],
                 adapter: FeatureAdapter | None = None, tau: float = 4.0,
                 distance: str = "kl", smoothing: str = "softmax",
                 teacher_labels: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Smoothed gap E D(smooth(phi_S), smooth(phi_T)) and raw gap E ||phi_S - phi_T||^2.

    The raw form needs equal feature sizes (or an adapter); it is NaN otherwise. With the
    teacher's predicted classes of the same inputs, also ``agreement``: the fraction where the
    student predicts the same class. It costs nothing (the gap's forward gives the logits) and
    needs no label, so ``lnpt plan`` can tell a probe that has not started to learn (agreement
    at chance) from one that has.
    """

    was_training = model.training
    model.eval()
    total, raw, same, n = 0.0, 0.0, 0, 0
    device = device_of(model)
    labels = teacher_labels if teacher_labels is not None else [None] * len(inputs)
    for x, ft, yt in zip(inputs, teacher_features, labels):
        logits, fs = forward_with_features(model, x.to(device))
        if yt is not None:
            same += int((logits.argmax(1) == yt.to(device)).sum())
        ft = ft.to(device)
        if adapter is not None:
            fs = adapter(fs)
        b = x.shape[0]
        total += feature_distance(fs, ft, distance, smoothing, tau).item() * b
        raw += (fs - ft).pow(2).sum(1).sum().item() if fs.shape == ft.shape else float("nan")
        n += b
    model.train(was_training)
    out = {"gap": total / max(n, 1), "gap_raw": raw / max(n, 1)}
    if teacher_labels is not None:
        out["agreement"] = same / max(n, 1)
    return out
