"""A teacher from a Python factory plus a weights file.

The factory is a model reference (``package.module:function``, ``path/to/file.py:function``,
``timm:NAME``, ``torchvision:NAME``; see :mod:`lnpt.models.user`), called with the classes and
input shape of the sidecar; the weights are a ``state_dict`` saved with ``torch.save`` (read
with ``weights_only=True``, so the file cannot run code) or a ``.safetensors`` file. The
sidecar sits beside the weights file (:mod:`.sidecar`).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file

from ..errors import CheckpointError
from ..models import create_model, feature_dim
from ..models.user import resolve_factory
from .base import TeacherInfo
from .local import LocalTeacher
from .sidecar import file_digest, find_sidecar, parse_sidecar

_FIT_FIX = ("save the weights of the model this factory builds (torch.save(model.state_dict()) or "
            "safetensors), or name the factory and arguments they were trained with")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a ``.safetensors`` file or a ``torch.save`` of a state dict (also
    accepted: a dict holding it under ``"state_dict"``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher weights {path} do not exist")
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} names code to run while loading; lnpt reads only plain "
                              "state dicts (torch.save(model.state_dict())) or .safetensors") from None
    except Exception as exc:  # noqa: BLE001  damaged files raise many types
        raise CheckpointError(f"{path} is not a readable weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and state and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise CheckpointError(f"{path} holds no state dict (parameter name -> tensor)")
    return state


def load_factory_teacher(reference: str, weights: str | Path | None, sidecar: str | Path | None = None,
                         model_args: Mapping[str, Any] | None = None) -> LocalTeacher:
    """Build the factory's model, load ``weights`` strictly, and wrap it as a teacher."""
    resolve_factory(reference)  # a factory that is gone is the first thing to report
    if weights is None:
        raise CheckpointError(f"teacher {reference!r} is a model factory and needs its trained weights: "
                              "pass a state_dict file (torch.save) or a .safetensors file")
    side = find_sidecar(weights, sidecar)
    data = parse_sidecar(side)
    model = create_model(reference, data.input_shape, data.num_classes, model_args=dict(model_args or {}))
    state = read_state_dict(weights)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{weights} does not fit the model of {reference!r}: "
                              f"{str(exc).strip().splitlines()[-1].strip()}; {_FIT_FIX}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys))
                 if keys]
        raise CheckpointError(f"{weights} does not fit the model of {reference!r}: {'; '.join(parts)}; "
                              f"{_FIT_FIX}")
    identity = f"factory:{reference}:{sorted((model_args or {}).items())}:{file_digest(weights, side)}"
    source = _factory_file(reference)
    if source is not None:
        identity += ":" + file_digest(source)
    info = TeacherInfo(reference, 1.0, feature_dim(model), data)
    return LocalTeacher(model, info, identity=identity)


def _factory_file(reference: str) -> Path | None:
    """The factory's source file when it is one (its code is part of the teacher's identity)."""
    target = reference.rpartition(":")[0]
    return Path(target) if target.endswith(".py") and Path(target).is_file() else None
