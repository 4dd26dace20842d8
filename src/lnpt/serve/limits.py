"""The server's limits on slow clients, as plain settings (no FastAPI needed to read them).

Kept apart from :mod:`.admission`, which enforces them inside the app, so that the CLI can
build its flags and defaults without importing the serve extra.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ClientLimits:
    """Deadlines and upload slots of the teacher server (enforced by :mod:`lnpt.serve.admission`).

    ``body_timeout``: seconds to receive a request's whole body. ``request_timeout``: seconds
    for the whole request (body, wait for a worker, compute) before it is answered 504.
    ``max_uploads``: bodies read at once; ``max_uploads_per_client``: of those, from one address.
    """

    body_timeout: float = 30.0
    request_timeout: float = 120.0
    max_uploads: int = 64
    max_uploads_per_client: int = 48

    def __post_init__(self) -> None:
        for name in ("body_timeout", "request_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_uploads < 1 or self.max_uploads_per_client < 1:
            raise ValueError(f"max_uploads and max_uploads_per_client must be >= 1, got "
                             f"{self.max_uploads} and {self.max_uploads_per_client}")

    def to_dict(self) -> dict:
        return {"body_timeout": self.body_timeout, "request_timeout": self.request_timeout,
                "max_uploads": self.max_uploads, "max_uploads_per_client": self.max_uploads_per_client}
