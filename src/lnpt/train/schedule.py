"""Optimiser and learning-rate schedule of the trainer.

The rate is a pure function of the step, so a run resumed from an epoch checkpoint follows
the same schedule as an uninterrupted one.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: sgd, adam")


def lr_at(step: int, total: int, cfg: TrainConfig, warmup_steps: int = 0) -> float:
    """Learning rate at ``step``: linear warm-up, then constant, cosine decay to zero, or step
    decay (the classic ResNet recipe: /10 at half and at three quarters of the steps after
    warm-up). A pure function of the step, so resumed runs follow the same schedule."""
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(total - warmup_steps, 1)
    if cfg.schedule == "step":
        done = (step - warmup_steps) / span
        return cfg.lr * 0.1 ** (int(done >= 0.5) + int(done >= 0.75))
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))
