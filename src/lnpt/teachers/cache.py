"""Per-sample cache of teacher outputs for un-augmented inputs.

Without augmentation a sample's input is the same every epoch, so its teacher output is too:
the teacher then runs once per sample instead of once per sample per epoch. With augmentation
the inputs differ every epoch and the cache must not be used (the trainer enforces this).
"""
from __future__ import annotations

import torch

from .base import Guidance, Teacher


class TeacherCache:
    def __init__(self, teacher: Teacher, num_samples: int) -> None:
        self.teacher = teacher
        self.info = teacher.info
        self._logits: torch.Tensor | None = None
        self._features: torch.Tensor | None = None
        self._filled = torch.zeros(num_samples, dtype=torch.bool)
        self.teacher_calls = 0

    def prefill(self, outputs: Guidance) -> None:
        """Take precomputed outputs for every sample (e.g. from :mod:`lnpt.teachers.store`)."""
        if outputs.logits.shape[0] != self._filled.shape[0]:
            raise ValueError("precomputed teacher outputs do not cover the training set")
        self._logits, self._features = outputs.logits, outputs.features
        self._filled[:] = True

    def guide(self, index: torch.Tensor, x: torch.Tensor) -> Guidance:
        """Teacher outputs for samples ``index`` (inputs ``x``), computing only missing ones."""
        missing = ~self._filled[index]
        if missing.any():
            fresh = self.teacher.guide(x[missing])
            self.teacher_calls += 1
            if self._logits is None:
                n = self._filled.shape[0]
                self._logits = torch.empty(n, fresh.logits.shape[1], dtype=fresh.logits.dtype)
                self._features = torch.empty(n, fresh.features.shape[1], dtype=fresh.features.dtype)
            idx = index[missing]
            self._logits[idx] = fresh.logits
            self._features[idx] = fresh.features  # type: ignore[index]
            self._filled[idx] = True
        return Guidance(self._logits[index], self._features[index])  # type: ignore[index]
