"""LeNet-300-100 and LeNet-5: the small plain students of the pruning literature."""
from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS, ModelSpec


def _w(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class LeNet300100(nn.Module):
    """Fully connected 300-100 network on flattened images."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        c, h, w = spec.input_shape
        h1, h2 = _w(300, spec.width), _w(100, spec.width)
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, h1), nn.ReLU(inplace=True),
            nn.Linear(h1, h2), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(h2, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 (conv 6-16, fc 120-84) with ReLU and max-pooling; any input size >= 12."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        c, h, w = spec.input_shape
        c1, c2 = _w(6, spec.width), _w(16, spec.width)
        f1, f2 = _w(120, spec.width), _w(84, spec.width)
        pad = 2 if min(h, w) < 20 else 0  # keep tiny inputs (8x8 digits) from vanishing
        self.conv = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, c, h, w)).numel()
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, f1), nn.ReLU(inplace=True),
            nn.Linear(f1, f2), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(f2, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.conv(x)))


@MODELS.register("lenet300100")
def lenet300100(spec: ModelSpec) -> nn.Module:
    return LeNet300100(spec)


@MODELS.register("lenet5")
def lenet5(spec: ModelSpec) -> nn.Module:
    return LeNet5(spec)
