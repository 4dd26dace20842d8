"""A TorchScript file as a teacher.

Penultimate features cannot be read with a forward hook from a scripted module (its calls are
compiled; Python hooks never run), so a TorchScript teacher must give them itself, in one of
two ways (checked when it is loaded):

1. ``forward(x)`` returns a tuple ``(logits, features)``; :func:`save_torchscript_teacher`
   writes such a file from any model that honours lnpt's feature contract;
2. the module exports ``forward_features(x) -> (N, D)`` (``@torch.jit.export``) and has an
   ``nn.Linear`` submodule named ``classifier`` that maps those features to the logits.

Input size, normalisation and class names come from the JSON sidecar (:mod:`.sidecar`).
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path, write_text
from ..data.info import DatasetInfo
from ..errors import CheckpointError
from ..models import forward_with_features
from .base import Guidance, TeacherInfo
from .contract import probe_feature_dim
from .sidecar import candidates, file_digest, find_sidecar, parse_sidecar

CONTRACT = ("a TorchScript teacher must return (logits, features) from forward, or export "
            "forward_features(x) and have an nn.Linear submodule named 'classifier'; write one "
            "with lnpt.teachers.scripted.save_torchscript_teacher, or export ONNX instead "
            "(lnpt finds its features in the graph)")


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds compiled ``code/``; a ``torch.save`` file does not."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


class _TupleOut(nn.Module):
    """Wraps a model so its trace returns ``(logits, features)`` (the hook runs while tracing)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return forward_with_features(self.model, x)


def save_torchscript_teacher(model: nn.Module, info: DatasetInfo, path: str | Path) -> Path:
    """Trace ``model`` into a TorchScript teacher file plus its sidecar ``<path>.json``."""
    path = Path(path)
    x = torch.zeros(2, *info.input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_TupleOut(model.eval()), x)
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp))
    write_text(candidates(path)[0], json.dumps(info.to_dict(), indent=2) + "\n")
    return path


class TorchScriptTeacher:
    """Frozen TorchScript module, answering with logits and features per the contract above."""

    # Teacher protocol: its forward shares the cores with the student's step (prefetch only on
    # idle cores); its file digest is its identity, and the server hashes no weights for it.
    prefers_prefetch = False
    model = None

    def __init__(self, module: torch.jit.ScriptModule, info: TeacherInfo, tuple_out: bool,
                 identity: str | None = None) -> None:
        self.module = module.eval()
        self.info = info
        self._tuple_out = tuple_out
        self.identity = identity

    @torch.no_grad()
    def guide(self, x: torch.Tensor) -> Guidance:
        if self._tuple_out:
            logits, features = self.module(x)
        else:
            features = self.module.forward_features(x)
            logits = self.module.classifier(features)
        return Guidance(logits.detach(), features.detach().flatten(1))

    @classmethod
    def from_file(cls, path: str | Path, sidecar: str | Path | None = None) -> "TorchScriptTeacher":
        path = Path(path)
        side = find_sidecar(path, sidecar)
        data = parse_sidecar(side)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001  the loader raises RuntimeError and friends
            raise CheckpointError(f"{path} is not a loadable TorchScript file ({type(exc).__name__})") from None
        tuple_out = _returns_tuple(module, data, path)
        if not tuple_out and not (hasattr(module, "forward_features") and _is_linear(module, "classifier")):
            raise CheckpointError(f"{path}: {CONTRACT}")
        identity = f"torchscript:{file_digest(path, side)}"
        teacher = cls(module, TeacherInfo(f"torchscript:{path.name}", 1.0, 0, data), tuple_out, identity)
        dim = probe_feature_dim(teacher.guide, data, path, side)
        teacher.info = TeacherInfo(teacher.info.model, 1.0, dim, data)
        return teacher


def _returns_tuple(module: torch.jit.ScriptModule, data: DatasetInfo, path: Path) -> bool:
    try:
        with torch.no_grad():
            out = module.eval()(torch.zeros(2, *data.input_shape))
    except Exception as exc:  # noqa: BLE001  TorchScript raises its own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"teacher {path} does not run on inputs of shape "
                              f"{tuple(data.input_shape)} (from its sidecar): {first}") from None
    return isinstance(out, (tuple, list)) and len(out) == 2


def _is_linear(module: torch.jit.ScriptModule, name: str) -> bool:
    sub = getattr(module, name, None)
    return sub is not None and getattr(sub, "original_name", type(sub).__name__) == "Linear"
