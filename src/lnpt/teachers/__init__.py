"""Teachers: the guidance interface; sources (lnpt checkpoints, TorchScript, ONNX, model
factories with weights, remote servers) and the guidance wrappers the trainer reads (cache,
store, prefetch)."""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from .base import Guidance, Teacher, TeacherInfo, check_compatible, check_teacher
from .formats import FORMATS, TeacherOptions, load_teacher_source
from .guidance import (
    GuidanceSource,
    Prefetched,
    TeacherCache,
    TeacherSource,
    teacher_guidance,
    wants_prefetch,
)
from .local import LocalTeacher
from .remote import RemoteTeacher

SHIPPED_DIR = Path(__file__).parent / "shipped"


def shipped_teacher_path(dataset: str) -> Path:
    """Path of the teacher checkpoint shipped with the package for ``dataset``."""

    path = SHIPPED_DIR / f"{dataset}.pt"
    if not path.is_file():
        have = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))
        raise CheckpointError(
            f"no teacher is shipped for dataset {dataset!r} (shipped: {', '.join(have) or 'none'}); "
            f"train one with `lnpt teacher train --dataset {dataset}` and pass --teacher PATH"
        )
    return path


def load_teacher(source: str, dataset: str, token: str | None = None, timeout: float = 30.0,
                 retry_budget: float = 120.0, options: TeacherOptions | None = None) -> Teacher:
    """A teacher from an ``http(s)://`` server address, ``"shipped"``, or any source of
    :data:`FORMATS`: an lnpt checkpoint, a TorchScript or ONNX file, a model factory reference
    (``options`` carry its weights, sidecar, ONNX feature tensor)."""
    if source.startswith(("http://", "https://")):

        return RemoteTeacher(source, token=token, timeout=timeout, retry_budget=retry_budget)
    if source == "shipped":
        return LocalTeacher.from_checkpoint(str(shipped_teacher_path(dataset)))
    return load_teacher_source(source, options)


__all__ = ["FORMATS", "Guidance", "GuidanceSource", "LocalTeacher", "Prefetched", "Teacher", "TeacherCache",
           "TeacherInfo", "TeacherOptions", "TeacherSource", "check_compatible", "check_teacher", "load_teacher",
           "load_teacher_source", "shipped_teacher_path", "teacher_guidance", "wants_prefetch"]
