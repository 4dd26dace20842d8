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


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of the teacher server (enforced by :mod:`lnpt.serve.batching`).

    ``max_images``: images per merged forward; 0 switches batching off (each request is its
    own forward on one of ``max_concurrency`` replicas, as before batching existed).
    ``max_wait_ms``: how long the oldest queued request waits for others to join its forward.
    """

    max_images: int = 0
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_images, int) and self.max_images >= 0):
            raise ValueError(f"--dynamic-batch must be >= 0 images (0: off), got {self.max_images!r}")
        if not (isinstance(self.max_wait_ms, (int, float)) and math.isfinite(self.max_wait_ms)
                and self.max_wait_ms >= 0):
            raise ValueError(f"--dynamic-batch-wait-ms must be a number of milliseconds >= 0, got {self.max_wait_ms!r}")

    @property
    def on(self) -> bool:
        return self.max_images > 0

    def to_dict(self) -> dict:
        return {"dynamic_batch": self.max_images, "batch_wait_ms": self.max_wait_ms}
