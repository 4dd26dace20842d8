"""Slow, stalled and vanishing clients on a real loopback server (uvicorn in a thread): they
hold upload slots, never workers; their deadlines pass; their aborts are not teacher failures."""
from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest
import torch

from lnpt.serve import ClientLimits, RemoteTeacher
from lnpt.serve.background import ServerThread, StalledUploads
from lnpt.serve.logs import ACCESS_LOGGER, SERVER_LOGGER
from lnpt.serve.server import create_app
from lnpt.teachers import Guidance, LocalTeacher, Teacher
from lnpt.teachers.wire import JSON, SAFETENSORS, encode



class SlowTeacher(Teacher):
    """Answers after ``delay`` seconds (a teacher busy with a large batch)."""

    def __init__(self, info, delay: float) -> None:
        self.info, self.delay = info, delay

    def __deepcopy__(self, memo: dict) -> "SlowTeacher":
        return self

    def guide(self, x: torch.Tensor) -> Guidance:
        time.sleep(self.delay)
        flat = x.flatten(1).repeat(1, 3)
        return Guidance(flat[:, :10], flat[:, : self.info.feature_dim])


def _health(url: str) -> dict:
    return httpx.get(f"{url}/healthz", trust_env=False, timeout=5).json()


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_stalled_uploads_hold_no_worker_and_expire(digits_teacher: LocalTeacher, digits) -> None:
    # 32 stalled uploads against 2 workers + 16 queue places: before the fix 18 of them took
    # every place and legitimate requests got 503 until the stalled clients gave up.
    x = digits.train.unlabeled().inputs(torch.arange(16))
    want = digits_teacher.guide(x)
    app = create_app(digits_teacher, allow_unauthenticated=True, max_concurrency=2, max_queue=16,
                     clients=ClientLimits(body_timeout=4.0, max_uploads=64, max_uploads_per_client=48))
    with ServerThread(app) as srv:
        with StalledUploads(srv.url, 32) as stalled:
            assert _wait_for(lambda: _health(srv.url)["uploads"] == 32, 3.0)
            with RemoteTeacher(srv.url, retry_budget=0) as remote:  # no retry: every answer must be 200
                latencies = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    got = remote.guide(x)
                    latencies.append(time.perf_counter() - t0)
                    assert torch.equal(got.logits, want.logits)
            assert max(latencies) < 2.0
            assert stalled.wait_closed(8.0)  # the body deadline (4 s) closed every one of them
        health = _health(srv.url)
    assert len(stalled.answers) == 32
    assert all(a.startswith(b"HTTP/1.1 408") and b"not received within 4s" in a for a in stalled.answers)
    assert health["uploads"] == 0 and health["timed_out"] == 32 and health["pending"] == 0


def test_one_address_cannot_take_every_upload_slot(digits_teacher: LocalTeacher) -> None:
    app = create_app(digits_teacher, allow_unauthenticated=True,
                     clients=ClientLimits(body_timeout=3.0, max_uploads=8, max_uploads_per_client=2))
    with ServerThread(app) as srv, StalledUploads(srv.url, 2):
        assert _wait_for(lambda: _health(srv.url)["uploads"] == 2, 3.0)
        r = httpx.post(f"{srv.url}/v1/guide", content=b"x", trust_env=False, timeout=5,
                       headers={"Content-Type": SAFETENSORS})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "too many uploads in progress from 127.0.0.1" in r.json()["error"]


def test_client_that_hangs_up_mid_upload_is_logged_as_such(digits_teacher: LocalTeacher, caplog) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)
    app = create_app(digits_teacher, allow_unauthenticated=True)
    with ServerThread(app) as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"POST /v1/guide HTTP/1.1\r\nHost: x\r\nContent-Type: " + SAFETENSORS.encode() + b"\r\n"
                      b"X-Request-ID: gone\r\nContent-Length: 100000\r\n\r\n" + b"\x00" * 10)
            assert _wait_for(lambda: _health(srv.url)["uploads"] == 1, 3.0)
        assert _wait_for(lambda: _health(srv.url)["aborted"] == 1, 5.0)
        assert _health(srv.url)["uploads"] == 0
    access = [r for r in caplog.records if r.name == ACCESS_LOGGER and r.fields["request_id"] == "gone"]
    assert len(access) == 1
    assert access[0].fields["status"] == 499 and access[0].fields["aborted"] is True
    assert access[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.name == SERVER_LOGGER and r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in caplog.records)  # no traceback anywhere


def test_a_request_past_its_deadline_is_answered_504(digits_teacher: LocalTeacher) -> None:
    slow = SlowTeacher(digits_teacher.info, delay=1.0)
    app = create_app(slow, allow_unauthenticated=True, max_concurrency=1,
                     clients=ClientLimits(request_timeout=0.4))
    body = encode({"inputs": torch.zeros(1, 1, 8, 8)}, SAFETENSORS)
    with ServerThread(app) as srv:
        t0 = time.perf_counter()
        r = httpx.post(f"{srv.url}/v1/guide", content=body, trust_env=False, timeout=10,
                       headers={"Content-Type": SAFETENSORS})
        elapsed = time.perf_counter() - t0
        assert _wait_for(lambda: _health(srv.url)["pending"] == 0, 3.0)  # the worker let go of it
    assert r.status_code == 504 and "within 0.4s" in r.json()["error"]
    assert elapsed < 0.9


@pytest.mark.parametrize("body", [
    b'{"inputs": [[[[' + b"9" * 400 + b"]]]]}",           # a 400-digit integer: OverflowError in numpy
    b'{"inputs": [[[[1e999]]]]}',                          # infinity in disguise
    b'{"inputs": [[[[1, [2]]]]]}',                          # ragged nesting
    b'{"inputs": "text"}',                                 # not numbers at all
    b"[" * 100_000 + b"]" * 100_000,                      # deep nesting
], ids=["400-digit-int", "1e999", "ragged", "string", "deep"])
def test_every_malformed_json_body_is_a_4xx(digits_teacher: LocalTeacher, body: bytes) -> None:
    app = create_app(digits_teacher, allow_unauthenticated=True)
    with ServerThread(app) as srv:
        r = httpx.post(f"{srv.url}/v1/guide", content=body, trust_env=False, timeout=10,
                       headers={"Content-Type": JSON})
        ok = httpx.post(f"{srv.url}/v1/guide", content=json.dumps({"inputs": [[[[0.0] * 8] * 8]]}),
                        trust_env=False, timeout=10, headers={"Content-Type": JSON})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]
    assert ok.status_code == 200  # the server lived through it


@pytest.mark.parametrize("kwargs, match", [
    ({}, "no token given"),
    ({"token": ""}, "token is empty"),
    ({"token": "   "}, "token is empty"),
    ({"token": "t", "allow_unauthenticated": True}, "contradict"),
    ({"allow_unauthenticated": True, "clients": "body"}, "body_timeout must be a positive"),
    ({"allow_unauthenticated": True, "clients": "uploads"}, "max_uploads"),
])
def test_authentication_is_never_off_by_accident(digits_teacher: LocalTeacher, kwargs: dict, match: str) -> None:
    kw = dict(kwargs)
    with pytest.raises(ValueError, match=match):
        if kw.get("clients") == "body":
            kw["clients"] = ClientLimits(body_timeout=0)
        elif kw.get("clients") == "uploads":
            kw["clients"] = ClientLimits(max_uploads=0)
        create_app(digits_teacher, **kw)
