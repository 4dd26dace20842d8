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

Several servers: ``url`` may name several addresses (a list, or one string with commas,
``http://a:8000,http://b:8000``). Requests go to the server with the fewest requests of this
client outstanding (ties in turn, so a single-threaded client goes round-robin); a server that
fails a request (connection error, timeout, 5xx) is skipped for a short cool-down and the
request is sent at once to another one, all within the one retry budget, which runs out only
while no server answers. Every server must serve the same teacher: the constructor compares
the fingerprints of all that answer, and every answer's fingerprint is checked as before, so a
server that was down at the start is checked on its first answer.
"""
from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

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


#: Seconds a server that failed a request is passed over while another one answers.
COOL_DOWN = 1.0


@dataclass(eq=False)
class _Server:
    """One address of the teacher: its connection pool and what this client knows of its state."""

    url: str
    http: httpx.Client
    outstanding: int = 0
    down_until: float = 0.0
    fingerprint: str | None = None  # None: not heard from yet
    answered: int = field(default=0)


def split_urls(url: str | Sequence[str]) -> list[str]:
    """The server addresses of ``url`` (one, a comma-separated string, or a sequence), checked."""
    parts = [u for item in ([url] if isinstance(url, str) else url) for u in str(item).split(",")]
    urls = list(dict.fromkeys(u.strip().rstrip("/") for u in parts if u.strip()))
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if not urls or bad:
        raise ConfigError(f"teacher server addresses must be http(s)://host:port, comma-separated, got {url!r}")
    return urls


class RemoteTeacher:
    """Guidance from one or several ``lnpt teacher serve`` servers (see the module's docstring).

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

    def __init__(self, url: str | Sequence[str], token: str | None = None, timeout: float = 30.0,
                 retry_budget: float = 120.0, wire_format: str = "safetensors",
                 dataset: DatasetInfo | None = None, backoff: float = 0.05,
                 max_backoff: float = 2.0) -> None:
        if wire_format not in FORMATS:
            raise ValueError(f"unknown wire format {wire_format!r}; known: {', '.join(FORMATS)}")
        _check_seconds(timeout, "--teacher-timeout", "the longest one request to the teacher may take",
                       zero_ok=False)
        _check_seconds(retry_budget, "--teacher-retry-budget",
                       "how long an unreachable teacher is retried; 0 gives up at once", zero_ok=True)
        self.urls = split_urls(url)
        self.url = ",".join(self.urls)  # as the user wrote it: for messages and the run's record
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
        self._servers = [_Server(u, httpx.Client(base_url=u, headers=headers, trust_env=False,
                                                 timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0))))
                         for u in self.urls]
        self._turn = 0
        self.stats = {"requests": 0, "retries": 0, "seconds_waited": 0.0, "failovers": 0}
        try:
            server, r = self._request("GET", "/v1/info")
            self.info, self.fingerprint, self.limits = _read_info(server, r)
            server.fingerprint, self._reference = self.fingerprint, server.url
            for other in self._servers:
                if other is not server:
                    self._check_server(other)
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
        """A server's ``/healthz`` (load, fingerprint); retried like any request."""
        return self._request("GET", "/healthz")[1].json()

    def answered(self) -> dict[str, int]:
        """Guidance answers received from each server address (how the load was spread)."""
        return {s.url: s.answered for s in self._servers}

    def close(self) -> None:
        for s in self._servers:
            s.http.close()

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

    def _check_server(self, server: _Server) -> None:
        """One try at another address's info: a different teacher is refused; a server that does
        not answer now is checked by the fingerprint of its first guidance answer."""
        try:
            r = server.http.get("/v1/info")
        except httpx.TransportError as exc:
            log.warning("teacher server not reachable yet; checked on its first answer",
                        extra={"fields": {"url": server.url, "error": f"{type(exc).__name__}: {exc}"}})
            return
        if r.status_code >= 500:
            return
        self._refuse(server, r, "GET", "/v1/info")
        _, fingerprint, limits = _read_info(server, r)
        self._same_teacher(server, fingerprint)
        self.limits = Limits(min(self.limits.max_batch, limits.max_batch),
                             min(self.limits.max_body_bytes, limits.max_body_bytes))

    def _same_teacher(self, server: _Server, served: str | None) -> None:
        if served == self.fingerprint:
            server.fingerprint = served
            return
        if server.fingerprint is None and len(self._servers) > 1:
            raise TeacherMismatchError(
                f"teacher servers disagree: {server.url} serves teacher {served}, {self._reference} serves "
                f"{self.fingerprint}; every address given must serve the same checkpoint")
        raise TeacherMismatchError(
            f"the server at {server.url} now serves a different teacher (fingerprint {served}, "
            f"was {self.fingerprint} when this run connected): guidance would change mid-run. "
            "Restart the server with the original checkpoint, or start a new run")

    def _guide_chunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        body = encode({"inputs": x}, self.format)
        server, r = self._request("POST", "/v1/guide", content=body,
                                  headers={"Content-Type": self.format, "Accept": self.format})
        self._same_teacher(server, r.headers.get(TEACHER_HEADER))
        try:
            arrays, _ = decode(r.content, media_type(r.headers.get("content-type")), OUTPUT_NAMES)
        except WireError as exc:
            raise TeacherServiceError(f"unreadable guidance from {server.url}: {exc}") from None
        n = x.shape[0]
        lg, ft = arrays["logits"], arrays["features"]
        with self._outage_lock:
            server.answered += 1
        if lg.shape != (n, self.info.num_classes) or ft.shape != (n, self.info.feature_dim):
            raise TeacherServiceError(
                f"guidance from {server.url} has shapes {lg.shape} / {ft.shape}, expected "
                f"({n}, {self.info.num_classes}) / ({n}, {self.info.feature_dim})")
        return _tensor(lg), _tensor(ft)

    def _pick(self, tried: set) -> _Server:
        """The live server not yet tried with the fewest outstanding requests (ties in turn);
        when every one is cooling down or tried, the one that comes back first."""
        now = time.monotonic()
        with self._outage_lock:
            n = len(self._servers)
            order = [self._servers[(self._turn + i) % n] for i in range(n)]
            self._turn += 1
            live = [s for s in order if s.down_until <= now and s not in tried]
            server = min(live, key=lambda s: s.outstanding) if live else min(order, key=lambda s: s.down_until)
            server.outstanding += 1
            self.stats["requests"] += 1
        return server

    def _request(self, method: str, path: str, **kwargs: object) -> tuple[_Server, httpx.Response]:
        """One request, sent to another server or retried on connection errors, timeouts and
        5xx within the budget; returns the server that answered and its answer."""
        delay = self._backoff
        rid = uuid.uuid4().hex[:16]
        headers = {**(kwargs.pop("headers", None) or {}), "X-Request-ID": rid}  # type: ignore[dict-item]
        tried: set = set()
        while True:
            server = self._pick(tried)
            try:
                r = server.http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError as exc:
                problem, retry_after = f"{type(exc).__name__}: {exc}", 0.0
            else:
                if r.status_code < 400:
                    with self._outage_lock:
                        self._outage_deadline = None  # reachable again: the next outage gets a full budget
                        server.down_until = 0.0
                    return server, r
                self._refuse(server, r, method, path)
                problem, retry_after = f"HTTP {r.status_code}: {_reason(r)}", _seconds(r.headers.get("retry-after"))
            finally:
                with self._outage_lock:
                    server.outstanding -= 1
            tried.add(server)
            where = f"{server.url}: " if len(self._servers) > 1 else ""
            pause = self._after_failure(server, where + problem, retry_after, delay)
            log.warning("teacher request failed; " + ("retrying" if pause else "trying another server"),
                        extra={"fields": {"url": server.url, "path": path, "error": problem,
                                          "retry_in_s": round(pause, 3), "request_id": rid}})
            if pause:
                time.sleep(pause)
                delay = min(delay * 2, self._max_backoff)
                tried.clear()

    def _refuse(self, server: _Server, r: httpx.Response, method: str, path: str) -> None:
        """Raise for a 4xx answer (the caller's fault: no other server would say otherwise)."""
        if r.status_code < 400 or r.status_code >= 500:
            return
        reason = _reason(r)
        if r.status_code in (401, 403):
            raise TeacherAuthError(
                f"teacher at {server.url} refused the token ({r.status_code}: {reason}); pass the "
                f"server's token with --teacher-token or ${TOKEN_ENV}")
        hint = " (is this an lnpt teacher server?)" if r.status_code in (404, 405) else ""
        raise TeacherServiceError(
            f"teacher at {server.url} refused {method} {path} ({r.status_code}): {reason}{hint}")

    def _after_failure(self, server: _Server, problem: str, retry_after: float, delay: float) -> float:
        """Spend the shared budget on a failure: seconds to wait before the next try (0: another
        server is live, try it now), or :class:`TeacherUnavailableError` once the budget is gone."""
        now = time.monotonic()
        with self._outage_lock:
            server.down_until = now + max(COOL_DOWN, retry_after)
            if self._outage_deadline is None:
                self._outage_deadline = now + self.retry_budget
            deadline = self._outage_deadline
            other_live = any(s.down_until <= now for s in self._servers)
        if now >= deadline:
            where = (f"teacher at {self.url}" if len(self._servers) == 1
                     else f"all {len(self._servers)} teacher servers ({', '.join(self.urls)}) were")
            raise TeacherUnavailableError(
                f"{where} unavailable for {self.retry_budget:g}s (last error: {problem}). "
                "The run stops at its last checkpoint; restart the server and resume "
                "(--resume), or raise --teacher-retry-budget")
        with self._outage_lock:
            if other_live:
                self.stats["failovers"] += 1
                return 0.0
            pause = min(max(delay * (0.5 + self._jitter.random()), retry_after), deadline - now)
            self.stats["retries"] += 1
            self.stats["seconds_waited"] += pause
        return pause


def _read_info(server: _Server, r: httpx.Response) -> tuple[TeacherInfo, str, Limits]:
    """The teacher info, fingerprint and limits of an ``/v1/info`` answer, or one line why not."""
    try:
        d = r.json()
        return TeacherInfo.from_dict(d), str(d["teacher"]), Limits.from_dict(d["limits"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TeacherServiceError(f"{server.url}/v1/info is not an lnpt teacher's info ({exc!r})") from None


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
