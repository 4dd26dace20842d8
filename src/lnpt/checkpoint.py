"""Self-describing checkpoints that load without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` of a dict holding only tensors and JSON-like values, read
back with ``torch.load(weights_only=True)``: a file from an untrusted source cannot run code.
It carries what is needed to rebuild the network (architecture name, width, input shape,
classes), the dataset's normalisation, metrics and the library version. Writes are atomic.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_path
from .data.info import DatasetInfo
from .errors import CheckpointError
from .models import create_model
from .pruning.masks import get_masks, prepare_for_masks

FORMAT = "lnpt-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model_name: str
    width: float
    dataset: DatasetInfo
    state_dict: dict[str, torch.Tensor]
    masked: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """Rebuild the network (masks included) and load its weights."""
        model = create_model(self.model_name, self.dataset.input_shape, self.dataset.num_classes, self.width)
        prepare_for_masks(model, self.masked)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint weights do not fit {self.model_name} (width {self.width}): {exc}") from None
        return model


def save_checkpoint(path: str | Path, model: nn.Module, model_name: str, width: float,
                    dataset: DatasetInfo, metrics: dict | None = None, extra: dict | None = None) -> None:
    from . import __version__

    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lnpt_version": __version__,
        "model": {"name": model_name, "width": float(width)},
        "dataset": dataset.to_dict(),
        "masked": sorted(get_masks(model)),
        "metrics": metrics or {}, "extra": extra or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} is not a safe lnpt checkpoint: it holds objects that would need arbitrary "
            f"code to load ({str(exc).splitlines()[0]}). Refusing to load it."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupted or not a checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lnpt checkpoint (no '{FORMAT}' header); "
                              "train one with `lnpt teacher train`")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer lnpt (format {payload['format_version']}); upgrade lnpt")
    try:
        return Checkpoint(
            model_name=str(payload["model"]["name"]), width=float(payload["model"]["width"]),
            dataset=DatasetInfo.from_dict(payload["dataset"]), state_dict=payload["state_dict"],
            masked=list(payload.get("masked", [])), metrics=dict(payload.get("metrics", {})),
            extra=dict(payload.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an incomplete lnpt header (missing {exc})") from None
