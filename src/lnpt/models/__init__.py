"""Model zoo and user models. Every model returns logits and exposes penultimate features
through :func:`forward_with_features` (a hook on its final ``nn.Linear``)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from . import lenet, resnet, vgg  # noqa: F401  (registration side effect)
from .features import (
    classifier_name,
    feature_dim,
    find_classifier,
    forward_with_features,
    tap_features,
)
from .registry import MODELS, ModelSpec
from .user import FACTORY_ATTR, build_user_model, check_feature_contract, is_user_reference, named_by_user


def create_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: float = 1.0,
    seed: int | None = None,
    model_args: dict | None = None,
) -> nn.Module:
    """Build a zoo model, or a user model from a factory reference (``module:function``,
    ``file.py:function``, ``timm:NAME``; ``model_args`` go to its factory); ``seed`` makes the
    initialisation reproducible."""
    if width <= 0:
        raise ValueError(f"model width must be > 0, got {width}")
    if is_user_reference(name):
        if width != 1.0:
            raise ConfigError(f"width {width} applies to zoo models only; size a user model "
                             "through its factory's arguments (model_args)")
        builder = lambda spec: build_user_model(name, spec.input_shape, spec.num_classes, model_args)  # noqa: E731
    elif model_args:
        raise ConfigError(f"model arguments {sorted(model_args)} are for user models; zoo model "
                         f"{name!r} takes its size from width")
    else:
        builder = MODELS.get(name)
    spec = ModelSpec(tuple(int(v) for v in input_shape), int(num_classes), float(width))  # type: ignore[arg-type]
    if seed is None:
        return builder(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(spec)


__all__ = [
    "FACTORY_ATTR", "MODELS", "ModelSpec", "build_user_model", "check_feature_contract",
    "create_model", "is_user_reference", "named_by_user", "classifier_name", "feature_dim", "find_classifier",
    "forward_with_features", "tap_features",
]
