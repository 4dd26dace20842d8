"""The teacher-guidance interface shared by the pruning criteria, the trainer and the server.

A teacher answers a batch of (normalised) inputs with its logits and penultimate features.
Whether it runs in this process or behind HTTP is invisible to its users.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..data.info import DatasetInfo
from ..errors import TeacherMismatchError


@dataclass(frozen=True)
class Guidance:
    logits: torch.Tensor    # (N, num_classes)
    features: torch.Tensor  # (N, feature_dim)

    @property
    def pseudo_labels(self) -> torch.Tensor:
        """The teacher's hard labels (argmax of its logits): LNPT's only supervision."""
        return self.logits.argmax(1)


@dataclass(frozen=True)
class TeacherInfo:
    model: str
    width: float
    feature_dim: int
    dataset: DatasetInfo
    accuracy: float | None = None

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.dataset.input_shape

    def to_dict(self) -> dict:
        return {"model": self.model, "width": self.width, "feature_dim": self.feature_dim,
                "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "accuracy": self.accuracy, "dataset": self.dataset.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherInfo":
        return cls(model=str(d["model"]), width=float(d["width"]), feature_dim=int(d["feature_dim"]),
                   dataset=DatasetInfo.from_dict(d["dataset"]),
                   accuracy=None if d.get("accuracy") is None else float(d["accuracy"]))


@runtime_checkable
class Teacher(Protocol):
    """What every teacher offers; the criteria, the trainer, the output store and the server
    read these members and nothing else.

    A teacher may subclass this protocol to take the defaults of the three optional members.
    """

    info: TeacherInfo
    # What makes its outputs reproducible (e.g. the checkpoint's content hash): the key of
    # stored outputs. None: unknown, so its outputs are never stored across runs.
    identity: str | None = None
    # True when ``guide`` mostly waits (on a network): overlapping it with the student's step
    # is then free, so the trainer prefetches the next batch's guidance.
    prefers_prefetch: bool = False
    # The network, when it runs in this process: the server hashes its weights into the
    # fingerprint it sends. None when the teacher is elsewhere (remote) or opaque.
    model: nn.Module | None = None

    def guide(self, x: torch.Tensor) -> Guidance:
        """Logits and penultimate features for a batch of inputs; no gradient."""
        ...


TEACHER_MEMBERS = ("info", "identity", "prefers_prefetch", "model", "guide")


def check_teacher(obj: object) -> Teacher:
    """``obj`` itself when it has every member of :class:`Teacher`; otherwise a TypeError that
    names the missing ones (an object that only has ``info`` and ``guide`` can subclass
    :class:`Teacher` to take the defaults of the others)."""
    missing = [name for name in TEACHER_MEMBERS if not hasattr(obj, name)]
    if missing:
        raise TypeError(f"{type(obj).__name__} is not a Teacher: it lacks {', '.join(missing)}; "
                        "subclass lnpt.teachers.Teacher to take the defaults")
    return obj  # type: ignore[return-value]


def check_compatible(info: TeacherInfo, data: DatasetInfo) -> None:
    """Refuse a teacher that was trained for other classes, input shapes or normalisation."""
    problems = []
    if info.num_classes != data.num_classes:
        problems.append(f"{info.num_classes} classes vs the data's {data.num_classes}")
    if tuple(info.input_shape) != tuple(data.input_shape):
        problems.append(f"input shape {tuple(info.input_shape)} vs the data's {tuple(data.input_shape)}")
    elif any(abs(a - b) > 1e-6 for a, b in zip(info.dataset.mean + info.dataset.std, data.mean + data.std)):
        problems.append("a different input normalisation")
    if problems:
        raise TeacherMismatchError(
            f"teacher ({info.model}, trained on {info.dataset.name}) does not match dataset "
            f"{data.name}: {'; '.join(problems)}. Use a teacher trained on {data.name} "
            f"(`lnpt teacher train --dataset {data.name}`)"
        )
