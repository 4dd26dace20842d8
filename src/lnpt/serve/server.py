"""The teacher as an HTTP service: the "mature network in the cloud" of LNPT.

The server knows a :class:`~lnpt.teachers.base.Teacher` and nothing of students or trainers.
Endpoints:

* ``GET /healthz`` — liveness and load, no token needed (for probes and clients that wait).
* ``GET /v1/info`` — the teacher's :meth:`TeacherInfo.to_dict` (architecture, classes, input
  shape, normalisation, feature size) plus the server's limits and teacher fingerprint.
* ``POST /v1/guide`` — a binary batch of normalised inputs in (see :mod:`.wire`), logits and
  penultimate features out, in the format the ``Accept`` header asks for.

Robustness: bodies are size-checked before they are read in full, batches are validated
(dtype, shape, batch size, finite values) and refused with a 4xx and a reason; an exception in
the teacher is a 500 for that request only. At most ``max_concurrency`` batches run at once,
each on its own replica of the teacher (hooks that tap features are per-module state, so two
threads must never share one network), and at most ``max_queue`` more wait; anything beyond
that is answered 503 with ``Retry-After`` instead of growing memory without bound.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..teachers.base import Teacher
from ..teachers.wire import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    INPUT_NAMES,
    PROTOCOL_VERSION,
    TEACHER_HEADER,
    Limits,
    WireError,
    decode,
    encode,
    media_type,
    validate_inputs,
)
from .logs import SERVER_LOGGER, AccessLog, log_config

log = logging.getLogger(SERVER_LOGGER)


def teacher_fingerprint(teacher: Teacher) -> str:
    """A short hash of what the teacher is (its info and, when it has one, its weights).

    Sent with every answer, so a client notices when a restarted server serves another model
    under the same address, instead of silently training on different guidance.
    """
    h = hashlib.sha256(json.dumps(teacher.info.to_dict(), sort_keys=True).encode())
    model = getattr(teacher, "model", None)
    if isinstance(model, torch.nn.Module):
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _Replicas:
    """One teacher per worker thread, lent out for the duration of one batch."""

    def __init__(self, teacher: Teacher, n: int) -> None:
        self._pool: queue.Queue[Teacher] = queue.Queue()
        self._pool.put(teacher)
        for _ in range(n - 1):
            try:
                self._pool.put(copy.deepcopy(teacher))
            except Exception as exc:  # not copyable: batches take turns on the one teacher
                log.warning("teacher cannot be replicated; inference is serialised",
                            extra={"fields": {"error": repr(exc)}})
                break

    def guide(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher = self._pool.get()
        try:
            g = teacher.guide(x)
            return g.logits, g.features
        finally:
            self._pool.put(teacher)


def _error(status: int, reason: str, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    request.state.log["reason"] = reason
    return JSONResponse({"error": reason, "status": status}, status_code=status, headers=headers)


def create_app(teacher: Teacher, token: str | None = None, max_batch: int = DEFAULT_MAX_BATCH,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_concurrency: int = 2,
               max_queue: int = 16) -> FastAPI:
    """The ASGI app serving ``teacher``; run it with uvicorn (see :func:`run_server`).

    ``token``: when set, ``/v1/*`` needs ``Authorization: Bearer <token>``.
    ``max_concurrency``: batches computed at once (worker threads, teacher replicas).
    ``max_queue``: admitted requests that may wait for a worker; more get 503.
    """
    if max_concurrency < 1 or max_queue < 0 or max_batch < 1 or max_body_bytes < 1:
        raise ValueError("max_concurrency, max_batch and max_body_bytes must be >= 1, max_queue >= 0")
    limits = Limits(max_batch, max_body_bytes)
    info = teacher.info
    fingerprint = teacher_fingerprint(teacher)
    replicas = _Replicas(teacher, max_concurrency)
    executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="lnpt-teacher")
    capacity = max_concurrency + max_queue
    load = {"pending": 0, "served": 0, "refused_busy": 0}
    secret = token.encode() if token else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("teacher ready", extra={"fields": {"teacher": fingerprint, "model": info.model,
                                                   "dataset": info.dataset.name, **limits.to_dict(),
                                                   "max_concurrency": max_concurrency, "max_queue": max_queue,
                                                   "auth": secret is not None}})
        yield
        executor.shutdown(wait=True)  # uvicorn has already drained in-flight requests
        log.info("teacher stopped", extra={"fields": {"served": load["served"]}})

    app = FastAPI(title="lnpt teacher", version=str(PROTOCOL_VERSION), lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    def authorized(request: Request) -> bool:
        if secret is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), secret)

    def refuse_auth(request: Request) -> JSONResponse:
        return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)", request,
                      {"WWW-Authenticate": "Bearer"})

    @app.get("/healthz")
    async def health(request: Request) -> dict:
        return {"status": "ok", "teacher": fingerprint, "pending": load["pending"],
                "capacity": capacity, "served": load["served"], "refused_busy": load["refused_busy"]}

    @app.get("/v1/info", response_model=None)
    async def model_info(request: Request) -> dict | JSONResponse:
        if not authorized(request):
            return refuse_auth(request)
        return {**info.to_dict(), "teacher": fingerprint, "protocol": PROTOCOL_VERSION,
                "limits": limits.to_dict(), "formats": ["safetensors", "npy", "json"]}

    def work(body: bytes, fmt_in: str, fmt_out: str, note: dict, admitted: float) -> bytes:
        started = time.perf_counter()
        note["queue_ms"] = round((started - admitted) * 1000, 3)
        arrays, _ = decode(body, fmt_in, INPUT_NAMES)
        x = validate_inputs(arrays["inputs"], info.input_shape, limits)
        note["batch"] = int(x.shape[0])
        if not x.flags.writeable:
            x = x.copy()
        t0 = time.perf_counter()
        logits, features = replicas.guide(torch.from_numpy(x))
        note["compute_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return encode({"logits": logits.float(), "features": features.float()}, fmt_out,
                      {"teacher": fingerprint, "protocol": str(PROTOCOL_VERSION)})

    @app.post("/v1/guide")
    async def guide(request: Request) -> Response:
        if not authorized(request):
            return refuse_auth(request)
        try:
            fmt_in = media_type(request.headers.get("content-type"))
            fmt_out = media_type(request.headers.get("accept"), default=fmt_in)
        except WireError as exc:
            return _error(exc.status, str(exc), request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _error(413, f"body of {declared} bytes exceeds the server's limit of {max_body_bytes}",
                          request)
        if load["pending"] >= capacity:
            load["refused_busy"] += 1
            return _error(503, f"server busy ({load['pending']} requests in flight or queued); retry",
                          request, {"Retry-After": "1"})
        load["pending"] += 1
        t_read = time.perf_counter()
        try:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    return _error(413, f"body exceeds the server's limit of {max_body_bytes} bytes", request)
            note: dict = request.state.log
            note["read_ms"] = round((time.perf_counter() - t_read) * 1000, 3)
            out = await asyncio.get_running_loop().run_in_executor(
                executor, work, bytes(body), fmt_in, fmt_out, note, time.perf_counter())
        except WireError as exc:
            return _error(exc.status, str(exc), request)
        except Exception as exc:  # the teacher failed on this batch; the server lives on
            log.exception("guidance failed", extra={"fields": {"teacher": fingerprint}})
            return _error(500, f"teacher failed on this batch ({type(exc).__name__})", request)
        finally:
            load["pending"] -= 1
        load["served"] += 1
        return Response(out, media_type=fmt_out, headers={TEACHER_HEADER: fingerprint})

    app.state.fingerprint = fingerprint
    app.state.load = load
    app.add_middleware(AccessLog)
    return app


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
               graceful_timeout: float = 10.0) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then stop accepting, finish in-flight requests (for
    up to ``graceful_timeout`` seconds) and shut the workers down. Logs are JSON lines."""
    import uvicorn  # the serve extra; deferred so that building an app needs only FastAPI

    uvicorn.run(app, host=host, port=port, log_config=log_config(log_level), log_level=log_level,
                access_log=False, timeout_graceful_shutdown=int(graceful_timeout), server_header=False)

