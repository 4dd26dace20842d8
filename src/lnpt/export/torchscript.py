"""TorchScript export: a traced module that ``torch.jit.load`` runs without lnpt installed.

TorchScript is deprecated upstream in favour of ``torch.export``, but it is still what many
C++/mobile deployments load; the zoo models have no data-dependent control flow, so tracing
is exact. The trace is checked against the eager model before it is written.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path
from .onnx_export import ExportError


def export_torchscript(model: nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    path = Path(path)
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), x)
        if not torch.allclose(traced(x), model(x), atol=1e-5, rtol=1e-4):
            raise ExportError("the TorchScript trace does not reproduce the eager model")
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))
    return path


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")
