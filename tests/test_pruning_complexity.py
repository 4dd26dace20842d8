"""Parameter and MAC counts against a network counted by hand."""
from __future__ import annotations

import torch
from torch import nn

from lnpt.pruning import apply_masks
from lnpt.surgery.complexity import count_complexity


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)   # 18 weights + 2 biases, 4x4 output
        self.bn = nn.BatchNorm2d(2)                 # 2 + 2 params (buffers not counted)
        self.classifier = nn.Linear(32, 3)          # 96 weights + 3 biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_dense_counts():
    c = count_complexity(Small(), (1, 4, 4))
    assert c.params == 18 + 2 + 4 + 96 + 3 == c.params_nonzero
    assert c.macs == 16 * 18 + 96 == c.macs_masked  # 16 positions x 18 weights + 32 x 3


def test_mask_aware_counts_and_state_untouched():
    model = Small().train()
    mask = torch.zeros(2, 1, 3, 3)
    mask[0] = 1  # keep 9 of 18
    apply_masks(model, {"conv.weight": mask})
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    c = count_complexity(model, (1, 4, 4))
    assert c.params == 123 and c.params_nonzero == 123 - 9
    assert c.macs == 16 * 18 + 96 and c.macs_masked == 16 * 9 + 96
    assert model.training and all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())


def test_strided_grouped_conv():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 2))
    c = count_complexity(model, (4, 8, 8))
    assert c.macs == 16 * (8 * 2 * 9) + 128 * 2   # 4x4 positions x (8 out x 2 in/group x 9)
