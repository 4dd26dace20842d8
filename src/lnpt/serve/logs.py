"""Structured (JSON lines) logging for the teacher server.

One JSON object per line on stderr, for the server's own messages, uvicorn's, and the access
log (one line per request, written by :class:`AccessLog`). A log collector can parse every line
without regular expressions, and an operator can ``grep '"status": 503'``.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

ACCESS_LOGGER = "lnpt.serve.access"
SERVER_LOGGER = "lnpt.serve"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", **fields}``; ``fields`` comes from ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def log_config(level: str = "info") -> dict:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config=``: JSON lines everywhere."""
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "loggers": {name: dict(logger) for name in
                    ("uvicorn", "uvicorn.error", "uvicorn.access", SERVER_LOGGER, ACCESS_LOGGER)},
    }


class AccessLog:
    """Pure ASGI middleware: one structured line per HTTP request.

    Records status, latency, bytes in and out, the client's ``X-Request-ID`` (or a fresh one,
    echoed back), and what the endpoint put in ``scope["state"]["log"]`` (batch size, the
    reason of a refusal). Pure ASGI rather than ``BaseHTTPMiddleware`` so it adds no task hop
    and does not buffer bodies.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin1")[:64] or uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["log"] = {}
        info = {"status": 500, "bytes_out": 0}

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin1"))]
            elif message["type"] == "http.response.body":
                info["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client")
            fields = {
                "request_id": request_id, "client": f"{client[0]}:{client[1]}" if client else None,
                "method": scope.get("method"), "path": scope.get("path"), "status": info["status"],
                "ms": round((time.perf_counter() - t0) * 1000, 3),
                "bytes_in": _int(headers.get(b"content-length")), "bytes_out": info["bytes_out"],
                **state.get("log", {}),
            }
            level = logging.WARNING if info["status"] >= 500 else logging.INFO
            self.log.log(level, "request", extra={"fields": fields})


def _int(raw: bytes | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None
