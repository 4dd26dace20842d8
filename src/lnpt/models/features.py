"""The feature contract: every model gives logits and its penultimate features.

LNPT compares student and teacher *penultimate features*: the input of the final classifier
layer. Rather than asking models to implement a method, we find that layer and read its input
with a forward hook, so any user ``nn.Module`` whose head ends in an ``nn.Linear`` works
unchanged. A model may name its head explicitly with a ``classifier`` attribute.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


def find_classifier(model: nn.Module) -> nn.Linear:
    """The final classifier: ``model.classifier`` if it is a Linear, else the last Linear."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise TypeError(
            f"{type(model).__name__} has no nn.Linear layer: the feature contract needs a final "
            "linear classifier (or a `classifier` attribute that is an nn.Linear)"
        )
    return last


def classifier_name(model: nn.Module) -> str:
    """Qualified module name of the final classifier (e.g. ``"fc"``)."""
    head = find_classifier(model)
    for name, module in model.named_modules():
        if module is head:
            return name
    raise AssertionError("classifier not found among named modules")


def feature_dim(model: nn.Module) -> int:
    """Size of the penultimate features (the classifier's ``in_features``)."""
    return find_classifier(model).in_features


class _Tap:
    def __init__(self) -> None:
        self.features: torch.Tensor | None = None
        self.output_shape: torch.Size | None = None

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self.features = inputs[0]
        self.output_shape = output.shape


@contextlib.contextmanager
def tap_features(model: nn.Module) -> Iterator[_Tap]:
    """Within the block, ``tap.features`` holds the classifier input of the last forward."""
    tap = _Tap()
    handle = find_classifier(model).register_forward_hook(tap)
    try:
        yield tap
    finally:
        handle.remove()


def forward_with_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model(x)`` once and return ``(logits, penultimate_features)``.

    Features keep their autograd graph, so losses on them reach the student's weights.
    Features are flattened to ``(batch, feature_dim)``.
    """
    with tap_features(model) as tap:
        logits = model(x)
    if tap.features is None:
        raise RuntimeError(
            f"{type(model).__name__}.forward never called its classifier; "
            "the feature contract needs the final nn.Linear to produce the logits"
        )
    if tap.output_shape != logits.shape:
        # "Last nn.Linear" follows registration order; a head defined before the body in
        # __init__ would otherwise silently give the features of the wrong layer.
        raise RuntimeError(
            f"{type(model).__name__}: the layer taken as classifier ({classifier_name(model)!r}) "
            f"outputs {tuple(tap.output_shape or ())}, but the model returns {tuple(logits.shape)}; "
            "name the final nn.Linear `classifier` (or register it last) so that its input "
            "is the penultimate features"
        )
    return logits, tap.features.flatten(1)
