"""Model zoo. Every model returns logits and exposes penultimate features through
:func:`forward_with_features` (a hook on its final ``nn.Linear``)."""
from __future__ import annotations

import torch
from torch import nn

from . import lenet, resnet, vgg  # noqa: F401  (registration side effect)
from .features import (
    classifier_name,
    feature_dim,
    find_classifier,
    forward_with_features,
    tap_features,
)
from .registry import MODELS, ModelSpec


def create_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: float = 1.0,
    seed: int | None = None,
) -> nn.Module:
    """Build a zoo model; ``seed`` makes its initialisation reproducible."""
    if width <= 0:
        raise ValueError(f"model width must be > 0, got {width}")
    builder = MODELS.get(name)
    spec = ModelSpec(tuple(int(v) for v in input_shape), int(num_classes), float(width))  # type: ignore[arg-type]
    if seed is None:
        return builder(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(spec)


__all__ = [
    "MODELS", "ModelSpec", "create_model", "classifier_name", "feature_dim", "find_classifier",
    "forward_with_features", "tap_features",
]
