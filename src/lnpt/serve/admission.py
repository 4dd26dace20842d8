"""What a client may hold on the teacher server while it is still sending its request.

A slow or hostile client that announces a large body and then sends nothing must not hold a
worker: the server reads the whole body first (under a deadline, :func:`read_body`) and only
then asks for one of the ``max_concurrency + max_queue`` compute places. Bodies being read hold
an *upload slot* instead (:class:`UploadSlots`): many of them, cheap (a coroutine and the bytes
received so far), bounded in total and per client address so that one address cannot take them
all. Uploads that outlive ``body_timeout`` are answered ``408`` and their connection closed.
"""
from __future__ import annotations

import asyncio
from collections import Counter

from starlette.requests import ClientDisconnect, Request

from .limits import ClientLimits

__all__ = ["BodyTimeout", "BodyTooLarge", "ClientDisconnect", "UploadSlots", "read_body"]


class UploadSlots:
    """Counts bodies being read, in total and per client address (event-loop thread only)."""

    def __init__(self, limits: ClientLimits) -> None:
        self.limits = limits
        self.per_client: Counter[str] = Counter()
        self.total = 0

    def acquire(self, client: str) -> str | None:
        """Take a slot for ``client``; ``None`` on success, else why there is none."""
        if self.total >= self.limits.max_uploads:
            return f"server busy ({self.total} uploads in progress); retry"
        if self.per_client[client] >= self.limits.max_uploads_per_client:
            return f"too many uploads in progress from {client} ({self.per_client[client]}); retry"
        self.total += 1
        self.per_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


class BodyTooLarge(Exception):
    """More bytes arrived than the server accepts."""


class BodyTimeout(Exception):
    """The body did not arrive in full before the deadline."""


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The request's body, counted while it arrives (a missing or false ``Content-Length``
    cannot smuggle in more than ``max_bytes``) and abandoned after ``timeout`` seconds.

    Raises :class:`BodyTooLarge`, :class:`BodyTimeout`, or starlette's ``ClientDisconnect``
    when the client goes away mid-upload."""

    async def collect() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise BodyTooLarge
        return bytes(body)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise BodyTimeout from None
