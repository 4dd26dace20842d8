"""A teacher behind HTTP that looks exactly like an in-process one.

:class:`RemoteTeacher` implements the :class:`~lnpt.teachers.base.Teacher` protocol (``.info``
and ``.guide(x)``), so the pruning criteria and the trainer use it unchanged, and every command
that takes ``--teacher PATH`` also takes ``--teacher http://host:port``.

Faults: guidance is a pure function of the inputs, so every request may be repeated. A
connection error, a timeout or a 5xx (a restarting or overloaded server) is retried with
exponential backoff until ``retry_budget`` seconds have passed since the first failure; then
:class:`TeacherUnavailableError` stops the run, whose last epoch checkpoint lets ``--resume``
finish it. The budget belongs to the teacher, not to a call: every thread that asks it (the
trainer and its guidance prefetch) spends the same one, and a success refills it. A 4xx is the caller's fault and is raised at once with the server's reason. Every
answer carries the served teacher's fingerprint: a server restarted with another model under
the same address is refused (:class:`~lnpt.errors.TeacherMismatchError`), never trained on.
"""
from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import uuid

import httpx
import numpy as np
import torch

from ..data.info import DatasetInfo
from ..errors import ConfigError, LnptError, TeacherMismatchError
from .base import Guidance, TeacherInfo, check_compatible
from .wire import (
    FORMATS,
    JSON,
    OUTPUT_NAMES,
    TEACHER_HEADER,
    TOKEN_ENV,
    Limits,
    WireError,
    decode,
    encode,
    media_type,
)

log = logging.getLogger("lnpt.teachers.remote")


class TeacherServiceError(LnptError):
    """The teacher server refused a request (4xx) or answered something that is not guidance."""


class TeacherAuthError(TeacherServiceError):
    """The server wants a bearer token and did not get the right one."""


class TeacherUnavailableError(TeacherServiceError):
    """The server could not be reached (or kept failing) for longer than the retry budget."""


class RemoteTeacher:
    """Guidance from an ``lnpt teacher serve`` server.

    ``token`` defaults to ``$LNPT_TEACHER_TOKEN``. ``timeout`` bounds one request;
    ``retry_budget`` bounds how long the teacher keeps retrying a failing server, counted from
    the first failure of an outage and shared by all threads (0: give up at the first failure). ``dataset``,
    when given, is checked against the served teacher at once (:func:`check_compatible`).
    The constructor fetches the teacher's info, so it waits (within the budget) for a server
    that is still starting.
    """

    # The trainer overlaps requests with training steps for teachers that set this.
    prefers_prefetch = True
    # The served weights are not here: outputs are not stored across runs (the server's
    # fingerprint guards them within a run), and the fingerprint hashes no local network.
    identity: str | None = None
    model = None

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0,
                 retry_budget: float = 120.0, wire_format: str = "safetensors",
                 dataset: DatasetInfo | None = None, backoff: float = 0.05,
                 max_backoff: float = 2.0) -> None:
        if wire_format not in FORMATS:
            raise ValueError(f"unknown wire format {wire_format!r}; known: {', '.join(FORMATS)}")
        _check_seconds(timeout, "--teacher-timeout", "the longest one request to the teacher may take",
                       zero_ok=False)
        _check_seconds(retry_budget, "--teacher-retry-budget",
                       "how long an unreachable teacher is retried; 0 gives up at once", zero_ok=True)
        self.url = url.rstrip("/")
        self.retry_budget = float(retry_budget)
        self._outage_lock = threading.Lock()
        self._outage_deadline: float | None = None  # set by an outage's first failure, cleared by a success
        self.format = FORMATS[wire_format]
        self._backoff, self._max_backoff = backoff, max_backoff
        self._jitter = random.Random()  # private: never touches the global or torch RNG
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"User-Agent": "lnpt-remote-teacher"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, trust_env=False,
                                  timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))
        self.stats = {"requests": 0, "retries": 0, "seconds_waited": 0.0}
        try:
            d = self._request("GET", "/v1/info").json()
            self.info = TeacherInfo.from_dict(d)
            self.fingerprint = str(d["teacher"])
            self.limits = Limits.from_dict(d["limits"])
        except (ValueError, KeyError, TypeError) as exc:
            self.close()
            raise TeacherServiceError(f"{self.url}/v1/info is not an lnpt teacher's info ({exc!r})") from None
        except BaseException:
            self.close()
            raise
        if dataset is not None:
            check_compatible(self.info, dataset)

    # ------------------------------------------------------------------ Teacher protocol

    def guide(self, x: torch.Tensor) -> Guidance:
        """Logits and penultimate features for ``x``; batches above the server's limits are
        split transparently (results are concatenated in order)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.info.input_shape):
            raise TeacherMismatchError(
                f"teacher at {self.url} takes inputs of shape (N, {', '.join(map(str, self.info.input_shape))}), "
                f"got {tuple(x.shape)}")
        x = x.detach().to("cpu", torch.float32).contiguous()
        logits, features = [], []
        for chunk in torch.split(x, self._chunk_size()):
            lg, ft = self._guide_chunk(chunk)
            logits.append(lg)
            features.append(ft)
        if len(logits) == 1:
            return Guidance(logits[0], features[0])
        return Guidance(torch.cat(logits), torch.cat(features))

    # ------------------------------------------------------------------ helpers

    def health(self) -> dict:
        """The server's ``/healthz`` (load, fingerprint); retried like any request."""
        return self._request("GET", "/healthz").json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RemoteTeacher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteTeacher({self.url!r}, teacher={getattr(self, 'fingerprint', '?')})"

    def _chunk_size(self) -> int:
        per_float = 24 if self.format == JSON else 4  # JSON: digits, separators, brackets
        per_sample = per_float * math.prod(self.info.input_shape)
        fit = max(1, (self.limits.max_body_bytes - 4096) // per_sample)
        return int(min(self.limits.max_batch, fit))

    def _guide_chunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        body = encode({"inputs": x}, self.format)
        r = self._request("POST", "/v1/guide", content=body,
                          headers={"Content-Type": self.format, "Accept": self.format})
        served = r.headers.get(TEACHER_HEADER)
        if served != self.fingerprint:
            raise TeacherMismatchError(
                f"the server at {self.url} now serves a different teacher (fingerprint {served}, "
                f"was {self.fingerprint} when this run connected): guidance would change mid-run. "
                "Restart the server with the original checkpoint, or start a new run")
        try:
            arrays, _ = decode(r.content, media_type(r.headers.get("content-type")), OUTPUT_NAMES)
        except WireError as exc:
            raise TeacherServiceError(f"unreadable guidance from {self.url}: {exc}") from None
        n = x.shape[0]
        lg, ft = arrays["logits"], arrays["features"]
        if lg.shape != (n, self.info.num_classes) or ft.shape != (n, self.info.feature_dim):
            raise TeacherServiceError(
                f"guidance from {self.url} has shapes {lg.shape} / {ft.shape}, expected "
                f"({n}, {self.info.num_classes}) / ({n}, {self.info.feature_dim})")
        return _tensor(lg), _tensor(ft)

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """One request, retried on connection errors, timeouts and 5xx within the budget."""
        delay = self._backoff
        rid = uuid.uuid4().hex[:16]
        headers = {**(kwargs.pop("headers", None) or {}), "X-Request-ID": rid}  # type: ignore[dict-item]
        while True:
            with self._outage_lock:
                self.stats["requests"] += 1
            retry_after = 0.0
            try:
                r = self._http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code < 400:
                    with self._outage_lock:
                        self._outage_deadline = None  # reachable again: the next outage gets a full budget
                    return r
                reason = _reason(r)
                if r.status_code in (401, 403):
                    raise TeacherAuthError(
                        f"teacher at {self.url} refused the token ({r.status_code}: {reason}); pass the "
                        f"server's token with --teacher-token or ${TOKEN_ENV}")
                if r.status_code < 500:
                    hint = " (is this an lnpt teacher server?)" if r.status_code in (404, 405) else ""
                    raise TeacherServiceError(
                        f"teacher at {self.url} refused {method} {path} ({r.status_code}): {reason}{hint}")
                problem = f"HTTP {r.status_code}: {reason}"
                retry_after = _seconds(r.headers.get("retry-after"))
            now = time.monotonic()
            with self._outage_lock:
                if self._outage_deadline is None:
                    self._outage_deadline = now + self.retry_budget
                deadline = self._outage_deadline
            if now >= deadline:
                raise TeacherUnavailableError(
                    f"teacher at {self.url} unavailable for {self.retry_budget:g}s (last error: {problem}). "
                    "The run stops at its last checkpoint; restart the server and resume "
                    "(--resume), or raise --teacher-retry-budget")
            pause = min(max(delay * (0.5 + self._jitter.random()), retry_after), deadline - now)
            log.warning("teacher request failed; retrying",
                        extra={"fields": {"url": self.url, "path": path, "error": problem,
                                          "retry_in_s": round(pause, 3), "request_id": rid}})
            with self._outage_lock:
                self.stats["retries"] += 1
                self.stats["seconds_waited"] += pause
            time.sleep(pause)
            delay = min(delay * 2, self._max_backoff)


def _check_seconds(value: object, flag: str, what: str, zero_ok: bool) -> None:
    """Refuse a timeout or budget no client can work with (``--teacher-timeout 0`` made every
    request time out at once and the run retry for two minutes)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value >= 0 if zero_ok else value > 0)
    if not ok:
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{flag} must be a number of seconds {bound} ({what}), got {value!r}")


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _reason(r: httpx.Response) -> str:
    try:
        body = r.json()
        return str(body.get("error") or body.get("detail") or body)[:500]
    except ValueError:
        return r.text[:200] or r.reason_phrase


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
