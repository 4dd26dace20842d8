"""CIFAR-style VGG with BatchNorm (as in Synaptic-Flow's model zoo): conv stages, global
average pooling, one linear classifier. Pooling uses ``ceil_mode`` so 28x28 inputs survive
all five stages (28-14-7-4-2-1)."""
from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS, ModelSpec

_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class VGG(nn.Module):
    def __init__(self, layout: list[int | str], spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = spec.input_shape[0]
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            cout = max(1, int(round(int(item) * spec.width)))
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, spec.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _register(name: str) -> None:
    @MODELS.register(name)
    def build(spec: ModelSpec) -> nn.Module:
        return VGG(_CONFIGS[name], spec)


for _name in _CONFIGS:
    _register(_name)
