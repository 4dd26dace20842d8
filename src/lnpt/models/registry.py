"""The model registry and the specification every builder receives."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """What a builder needs: input shape (C, H, W) and class count follow the dataset."""

    input_shape: tuple[int, int, int]
    num_classes: int
    width: float = 1.0


MODELS: Registry[Callable[[ModelSpec], nn.Module]] = Registry("model")
