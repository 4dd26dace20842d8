"""The check every teacher file passes when it is loaded, before any data is read.

A teacher from a file lnpt did not write is probed once on a zero batch of its declared input
shape: its logits must be ``(N, num_classes)`` for the classes its sidecar names and its
features ``(N, D)``. A file that disagrees with its sidecar fails here, with both named,
rather than as a shape error deep inside a training run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..data.info import DatasetInfo
from ..errors import CheckpointError
from .base import Guidance


def probe_feature_dim(guide: Callable[[torch.Tensor], Guidance], info: DatasetInfo, source: str | Path,
                      sidecar: str | Path) -> int:
    """Penultimate feature size of the teacher behind ``guide``."""
    try:
        out = guide(torch.zeros(2, *info.input_shape))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001  foreign runtimes raise their own types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"teacher {source} does not run on inputs of shape {tuple(info.input_shape)} "
                              f"(from {sidecar}): {first}") from None
    if out.logits.dim() != 2 or out.logits.shape != (2, info.num_classes):
        raise CheckpointError(f"teacher {source} outputs logits of shape {tuple(out.logits.shape[1:])} per "
                              f"sample but {sidecar} names {info.num_classes} classes; fix the sidecar")
    if out.features.dim() != 2 or out.features.shape[0] != 2:
        raise CheckpointError(f"teacher {source} gives features of shape {tuple(out.features.shape)} for a "
                              "batch of 2; penultimate features must be (batch, dim)")
    return int(out.features.shape[1])
