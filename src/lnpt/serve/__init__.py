"""The teacher as a service: an HTTP server, the matching remote teacher, and their wire format.

The client side (:class:`RemoteTeacher`) is imported eagerly: it is what ``load_teacher`` needs
for ``--teacher http://...``. The server side pulls in FastAPI, so ``create_app`` and
``run_server`` are imported on first use and a training run never pays for them.
"""
from __future__ import annotations

from typing import Any

from ..extras import require
from ..teachers.remote import (
    RemoteTeacher,
    TeacherAuthError,
    TeacherServiceError,
    TeacherUnavailableError,
)
from ..teachers.wire import FORMATS, TOKEN_ENV, Limits, WireError
from .limits import Batching, ClientLimits

_SERVER = ("create_app", "run_server", "teacher_fingerprint")


def __getattr__(name: str) -> Any:
    if name in _SERVER:
        require("fastapi", "the teacher server")
        # FastAPI is the serve extra: the server module loads only when it is asked for.
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Batching", "ClientLimits", "FORMATS", "Limits", "RemoteTeacher", "TOKEN_ENV", "TeacherAuthError", "TeacherServiceError",
           "TeacherUnavailableError", "WireError", "create_app", "run_server", "teacher_fingerprint"]
