"""The teacher as an HTTP service: the "mature network in the cloud" of LNPT.

The server knows a :class:`~lnpt.teachers.base.Teacher` and nothing of students or trainers.
Endpoints:

* ``GET /healthz`` — liveness and load, no token needed (for probes and clients that wait).
* ``GET /v1/info`` — the teacher's :meth:`TeacherInfo.to_dict` (architecture, classes, input
  shape, normalisation, feature size) plus the server's limits and teacher fingerprint.
* ``POST /v1/guide`` — a binary batch of normalised inputs in (see :mod:`.wire`), logits and
  penultimate features out, in the format the ``Accept`` header asks for.

Robustness: bodies are size-checked before they are read in full and must arrive within a
deadline (408), and the whole request has one too (504); a body that cannot be decoded or a
batch that fails validation (dtype, shape, batch size, finite values) is refused with a 4xx and
a reason; a client that hangs up mid-upload is logged as such (499), not as a failure; an
exception in the teacher is a 500 for that request only. Only a request whose body has arrived
competes for the workers: at most ``max_concurrency`` batches run at once, each on its own
replica of the teacher (hooks that tap features are per-module state, so two threads must never
share one network), and at most ``max_queue`` more wait; anything beyond that is answered 503
with ``Retry-After`` instead of growing memory without bound. Bodies still arriving hold cheap
upload slots, bounded in total and per client address (:mod:`.admission`), so slow or stalled
uploads cannot starve the clients that send theirs.

Dynamic batching (``batching``, off by default): instead of one forward per request on its own
replica, validated requests wait up to ``max_wait_ms`` in one queue and a single worker runs
them as one forward of up to ``max_images`` images (:mod:`.batching`); decoding and encoding
stay on the ``max_concurrency`` threads. Admission, deadlines and per-request limits are the
same in both modes. ``/healthz`` counts forwards and the images they held.
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

import numpy as np
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
from .admission import BodyTimeout, BodyTooLarge, ClientDisconnect, UploadSlots, read_body
from .batching import Batcher, ForwardCounter
from .limits import Batching, ClientLimits
from .logs import SERVER_LOGGER, AccessLog, log_config

log = logging.getLogger(SERVER_LOGGER)


def teacher_fingerprint(teacher: Teacher) -> str:
    """A short hash of what the teacher is (its info and, when it has one, its weights).

    Sent with every answer, so a client notices when a restarted server serves another model
    under the same address, instead of silently training on different guidance.
    """
    h = hashlib.sha256(json.dumps(teacher.info.to_dict(), sort_keys=True).encode())
    if teacher.model is not None:
        for name, t in sorted(teacher.model.state_dict().items()):
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


#: Status logged for a client that went away before its request was complete (nginx's code);
#: it is never sent, since nobody is listening.
CLIENT_CLOSED = 499


class _Service:
    """The state behind the endpoints: limits, the worker pool, the load counters."""

    def __init__(self, teacher: Teacher, secret: bytes | None, limits: Limits, max_concurrency: int,
                 max_queue: int, clients: ClientLimits, batching: Batching) -> None:
        self.info, self.limits, self.secret, self.clients = teacher.info, limits, secret, clients
        self.fingerprint = teacher_fingerprint(teacher)
        self.batching, self.forwards = batching, ForwardCounter()
        # Batching: one worker feeds one network, so no replicas (on a GPU, no copies in memory).
        self.replicas = _Replicas(teacher, 1 if batching.on else max_concurrency)
        self.batcher = Batcher(self.replicas.guide, batching.max_images, batching.max_wait_ms / 1000,
                               self.forwards) if batching.on else None
        self.executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="lnpt-teacher")
        self.capacity = max_concurrency + max_queue
        self.load = {"pending": 0, "served": 0, "refused_busy": 0, "timed_out": 0, "aborted": 0}
        self.uploads = UploadSlots(clients)

    def authorized(self, request: Request) -> bool:
        if self.secret is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.secret)

    def refuse_auth(self, request: Request) -> JSONResponse:
        return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)", request,
                      {"WWW-Authenticate": "Bearer"})

    def work(self, body: bytes, fmt_in: str, fmt_out: str, note: dict, admitted: float) -> bytes:
        started = time.perf_counter()
        note["queue_ms"] = round((started - admitted) * 1000, 3)
        x = self._inputs(body, fmt_in)
        note["batch"] = int(x.shape[0])
        t0 = time.perf_counter()
        logits, features = self.replicas.guide(torch.from_numpy(x))
        self.forwards.add(int(x.shape[0]))
        note["compute_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return self._encode(logits, features, fmt_out)

    async def work_batched(self, body: bytes, fmt_in: str, fmt_out: str, note: dict, admitted: float) -> bytes:
        """Decode on a worker thread, join the batcher's queue, encode on a worker thread.
        ``compute_ms`` is the wait for the merged forward plus the forward itself."""
        loop = asyncio.get_running_loop()
        x = await loop.run_in_executor(self.executor, self._inputs, body, fmt_in)
        note["batch"] = int(x.shape[0])
        t0 = time.perf_counter()
        note["queue_ms"] = round((t0 - admitted) * 1000, 3)
        assert self.batcher is not None
        logits, features = await asyncio.wrap_future(self.batcher.submit(torch.from_numpy(x)))
        note["compute_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return await loop.run_in_executor(self.executor, self._encode, logits, features, fmt_out)

    def _encode(self, logits: torch.Tensor, features: torch.Tensor, fmt_out: str) -> bytes:
        return encode({"logits": logits.float(), "features": features.float()}, fmt_out,
                      {"teacher": self.fingerprint, "protocol": str(PROTOCOL_VERSION)})

    def _inputs(self, body: bytes, fmt_in: str) -> np.ndarray:
        """The validated batch; whatever a hostile body makes the decoder raise is a 400."""
        try:
            arrays, _ = decode(body, fmt_in, INPUT_NAMES)
            x = validate_inputs(arrays["inputs"], self.info.input_shape, self.limits)
        except WireError:
            raise
        except Exception as exc:  # noqa: BLE001  (overflowing numbers, odd nesting: the body's fault)
            raise WireError(f"malformed request body ({type(exc).__name__}: {str(exc)[:200]})") from None
        return x if x.flags.writeable else x.copy()

    async def read(self, request: Request) -> bytes | Response:
        """The body, or the answer to a request whose body did not arrive (see :mod:`.admission`)."""
        client = request.client.host if request.client else "unknown"
        refused = self.uploads.acquire(client)
        if refused is not None:
            self.load["refused_busy"] += 1
            return _error(503, refused, request, {"Retry-After": "1"})
        t_read = time.perf_counter()
        try:
            body = await read_body(request, self.limits.max_body_bytes,
                                   min(self.clients.body_timeout, self.clients.request_timeout))
        except BodyTooLarge:
            return _error(413, f"body exceeds the server's limit of {self.limits.max_body_bytes} bytes", request)
        except BodyTimeout:
            self.load["timed_out"] += 1
            return _error(408, f"request body not received within {self.clients.body_timeout:g}s", request,
                          {"Connection": "close"})
        except ClientDisconnect:
            self.load["aborted"] += 1
            request.state.log["aborted"] = True
            return _error(CLIENT_CLOSED, "client closed the connection before its body arrived", request)
        finally:
            self.uploads.release(client)
        request.state.log["read_ms"] = round((time.perf_counter() - t_read) * 1000, 3)
        return body

    async def compute(self, request: Request, body: bytes, fmt_in: str, fmt_out: str,
                      deadline: float) -> Response:
        """Admit the batch to a worker (or 503), wait for it until the request's deadline (504)."""
        if self.load["pending"] >= self.capacity:
            self.load["refused_busy"] += 1
            return _error(503, f"server busy ({self.load['pending']} requests in flight or queued); retry",
                          request, {"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        self.load["pending"] += 1
        waiting: asyncio.Future
        if self.batcher is None:
            future = self.executor.submit(self.work, body, fmt_in, fmt_out, request.state.log, time.perf_counter())
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
            waiting = asyncio.wrap_future(future)
        else:  # cancelled at the deadline: a request still queued for a forward leaves the queue
            waiting = asyncio.ensure_future(self.work_batched(body, fmt_in, fmt_out, request.state.log,
                                                              time.perf_counter()))
            waiting.add_done_callback(lambda _: self._release())
        try:
            out = await asyncio.wait_for(waiting, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:  # a batch still queued is dropped; one computing finishes unseen
            self.load["timed_out"] += 1
            return _error(504, f"request not answered within {self.clients.request_timeout:g}s "
                               "(server overloaded); retry", request, {"Retry-After": "1"})
        except WireError as exc:
            return _error(exc.status, str(exc), request)
        except Exception as exc:  # the teacher failed on this batch; the server lives on
            log.exception("guidance failed", extra={"fields": {"teacher": self.fingerprint}})
            return _error(500, f"teacher failed on this batch ({type(exc).__name__})", request)
        self.load["served"] += 1
        return Response(out, media_type=fmt_out, headers={TEACHER_HEADER: self.fingerprint})

    def _release(self) -> None:
        self.load["pending"] -= 1

    async def guide(self, request: Request) -> Response:
        deadline = time.monotonic() + self.clients.request_timeout
        if not self.authorized(request):
            return self.refuse_auth(request)
        try:
            fmt_in = media_type(request.headers.get("content-type"))
            fmt_out = media_type(request.headers.get("accept"), default=fmt_in)
        except WireError as exc:
            return _error(exc.status, str(exc), request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            return _error(413, f"body of {declared} bytes exceeds the server's limit of "
                               f"{self.limits.max_body_bytes}", request, {"Connection": "close"})
        body = await self.read(request)
        if isinstance(body, Response):
            return body
        return await self.compute(request, body, fmt_in, fmt_out, deadline)


def create_app(teacher: Teacher, token: str | None = None, limits: Limits | None = None,
               max_concurrency: int = 2, max_queue: int = 16, allow_unauthenticated: bool = False,
               clients: ClientLimits | None = None, batching: Batching | None = None) -> FastAPI:
    """The ASGI app serving ``teacher``; run it with uvicorn (see :func:`run_server`).

    ``token``: ``/v1/*`` needs ``Authorization: Bearer <token>``. Serving without one must be
    asked for with ``allow_unauthenticated=True``: an empty or forgotten token never switches
    authentication off silently.
    ``max_concurrency``: batches computed at once (worker threads, teacher replicas).
    ``max_queue``: requests with a complete body that may wait for a worker; more get 503.
    ``limits``: largest batch and body one request may send (default: :class:`Limits`' defaults).
    ``clients``: deadlines and upload slots that keep slow clients from stalling the server.
    ``batching``: dynamic batching of concurrent requests into one forward (default: off).
    """
    limits = limits or Limits(DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES)
    if max_concurrency < 1 or max_queue < 0 or limits.max_batch < 1 or limits.max_body_bytes < 1:
        raise ValueError("max_concurrency, max_batch and max_body_bytes must be >= 1, max_queue >= 0")
    if token is not None and not token.strip():
        raise ValueError("the token is empty; pass a non-empty token, or none with allow_unauthenticated=True")
    if token is None and not allow_unauthenticated:
        raise ValueError("no token given; pass one, or allow_unauthenticated=True to serve without authentication")
    if token is not None and allow_unauthenticated:
        raise ValueError("a token and allow_unauthenticated=True contradict each other; pass one of them")
    svc = _Service(teacher, token.encode() if token else None, limits, max_concurrency, max_queue,
                   clients or ClientLimits(), batching or Batching())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("teacher ready", extra={"fields": {
            "teacher": svc.fingerprint, "model": svc.info.model, "dataset": svc.info.dataset.name,
            **svc.limits.to_dict(), **svc.clients.to_dict(), "max_concurrency": max_concurrency,
            "max_queue": max_queue, "auth": svc.secret is not None, **svc.batching.to_dict()}})
        yield
        if svc.batcher is not None:
            svc.batcher.close()
        svc.executor.shutdown(wait=True)  # uvicorn has already drained in-flight requests
        log.info("teacher stopped", extra={"fields": {"served": svc.load["served"]}})

    app = FastAPI(title="lnpt teacher", version=str(PROTOCOL_VERSION), lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def health(request: Request) -> dict:
        return {"status": "ok", "teacher": svc.fingerprint, "capacity": svc.capacity,
                "uploads": svc.uploads.total, **svc.load, **svc.forwards.to_dict(), **svc.batching.to_dict()}

    @app.get("/v1/info", response_model=None)
    async def model_info(request: Request) -> dict | JSONResponse:
        if not svc.authorized(request):
            return svc.refuse_auth(request)
        return {**svc.info.to_dict(), "teacher": svc.fingerprint, "protocol": PROTOCOL_VERSION,
                "limits": svc.limits.to_dict(), "formats": ["safetensors", "npy", "json"]}

    app.add_api_route("/v1/guide", svc.guide, methods=["POST"])
    app.state.fingerprint = svc.fingerprint
    app.state.load = svc.load
    app.add_middleware(AccessLog)
    return app


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
               graceful_timeout: float = 10.0) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then stop accepting, finish in-flight requests (for
    up to ``graceful_timeout`` seconds) and shut the workers down. Logs are JSON lines."""
    import uvicorn  # the serve extra; deferred so that building an app needs only FastAPI

    uvicorn.run(app, host=host, port=port, log_config=log_config(log_level), log_level=log_level,
                access_log=False, timeout_graceful_shutdown=int(graceful_timeout), server_header=False)

