"""In-process teacher: a frozen network in eval mode."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..device import device_of, to_device
from ..models import feature_dim, forward_with_features
from .base import Guidance, TeacherInfo


class LocalTeacher:
    """A checkpoint's network run in this process (the :class:`~lnpt.teachers.base.Teacher`
    protocol; ``model`` is the frozen network)."""

    # Its forward competes with the student's step for the same cores: the trainer prefetches
    # only when cores are idle (see :func:`lnpt.teachers.guidance.wants_prefetch`).
    prefers_prefetch = False

    def __init__(self, model: nn.Module, info: TeacherInfo, identity: str | None = None) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.info = info
        # What makes its outputs reproducible: the checkpoint's content hash (None: unknown,
        # so its outputs are never stored across runs).
        self.identity = identity

    @torch.no_grad()
    def guide(self, x: torch.Tensor) -> Guidance:
        """Outputs on the teacher's device (inputs are moved there; whoever reads the outputs
        moves them where it computes)."""
        logits, features = forward_with_features(self.model, to_device(x, device_of(self.model)))
        return Guidance(logits.detach(), features.detach())

    def to(self, device: torch.device) -> "LocalTeacher":
        """Run the teacher on ``device`` (it may differ from the student's); returns itself."""
        self.model.to(device)
        return self

    @classmethod
    def from_checkpoint(cls, path: str, allow_code: bool = False) -> "LocalTeacher":
        """The teacher a checkpoint holds; ``allow_code`` lets a user model's factory run
        (see :meth:`lnpt.checkpoint.Checkpoint.build`)."""
        ckpt = load_checkpoint(path)
        model = ckpt.build(allow_code=allow_code)
        acc = ckpt.metrics.get("test_acc")
        info = TeacherInfo(ckpt.model_name, ckpt.width, feature_dim(model), ckpt.dataset,
                           None if acc is None else float(acc))
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return cls(model, info, identity=f"checkpoint:{digest}")
