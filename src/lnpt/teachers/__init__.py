"""Teachers: the guidance interface, in-process and remote implementations, and a cache."""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from .base import Guidance, Teacher, TeacherInfo, check_compatible
from .cache import TeacherCache
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
                 retry_budget: float = 120.0) -> Teacher:
    """A teacher from a checkpoint path, an ``http(s)://`` server address, or ``"shipped"``."""
    if source.startswith(("http://", "https://")):

        return RemoteTeacher(source, token=token, timeout=timeout, retry_budget=retry_budget)
    path = shipped_teacher_path(dataset) if source == "shipped" else Path(source)
    return LocalTeacher.from_checkpoint(str(path))


__all__ = ["Guidance", "LocalTeacher", "Teacher", "TeacherCache", "TeacherInfo",
           "check_compatible", "load_teacher", "shipped_teacher_path"]
