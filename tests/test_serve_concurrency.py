"""Concurrent requests: correct answers under parallel load, real parallelism up to the bound,
503 instead of unbounded queueing beyond it, and clients that ride out the 503s."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from lnpt.serve import RemoteTeacher
from lnpt.serve.background import ServerThread
from lnpt.serve.server import create_app
from lnpt.teachers import Guidance, LocalTeacher, Teacher
from lnpt.teachers.wire import OUTPUT_NAMES, SAFETENSORS, decode, encode


class SlowTeacher(Teacher):
    """A teacher that takes ``delay`` seconds per batch and records how many run at once.

    Replicas (the server deep-copies its teacher per worker) share one tracker, so the peak is
    the server-wide number of batches computed concurrently.
    """

    def __init__(self, info, delay: float) -> None:
        self.info, self.delay = info, delay
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def __deepcopy__(self, memo: dict) -> "SlowTeacher":
        return self

    def guide(self, x: torch.Tensor) -> Guidance:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            flat = x.flatten(1).repeat(1, 3)  # 3 * 64 values >= the digits teacher's 168 features
            return Guidance(flat[:, :10] * 2.0, flat[:, : self.info.feature_dim])
        finally:
            with self._lock:
                self.active -= 1


def _post(url: str, x: torch.Tensor) -> httpx.Response:
    return httpx.post(f"{url}/v1/guide", content=encode({"inputs": x}, SAFETENSORS), trust_env=False,
                      headers={"Content-Type": SAFETENSORS}, timeout=20)


class ExclusiveTeacher(SlowTeacher):
    """Counts how often one *instance* is entered by two threads at once (a shared network)."""

    def __init__(self, info, delay: float, tracker: dict) -> None:
        super().__init__(info, delay)
        self.tracker = tracker
        self.busy = False

    def __deepcopy__(self, memo: dict) -> "ExclusiveTeacher":
        return ExclusiveTeacher(self.info, self.delay, self.tracker)  # a replica, same tracker

    def guide(self, x: torch.Tensor) -> Guidance:
        if self.busy:
            self.tracker["shared"] += 1
        self.busy = True
        with self.tracker["lock"]:
            self.tracker["active"] += 1
            self.tracker["peak"] = max(self.tracker["peak"], self.tracker["active"])
        try:
            return super().guide(x)
        finally:
            self.busy = False
            with self.tracker["lock"]:
                self.tracker["active"] -= 1


def test_each_worker_computes_on_its_own_replica(digits_teacher: LocalTeacher) -> None:
    # Feature taps are forward hooks on the network: two threads sharing one network could
    # read each other's features. The server gives every worker its own replica.
    tracker = {"lock": threading.Lock(), "active": 0, "peak": 0, "shared": 0}
    teacher = ExclusiveTeacher(digits_teacher.info, 0.3, tracker)
    with ServerThread(create_app(teacher, max_concurrency=3, max_queue=8, allow_unauthenticated=True)) as srv:
        with ThreadPoolExecutor(6) as pool:
            codes = [r.status_code for r in pool.map(lambda _: _post(srv.url, torch.zeros(1, 1, 8, 8)), range(6))]
    assert codes == [200] * 6
    assert tracker["peak"] == 3       # three batches at once ...
    assert tracker["shared"] == 0     # ... never two on the same network


def test_parallel_requests_each_get_their_own_exact_answer(digits_teacher: LocalTeacher, digits) -> None:
    view = digits.train.unlabeled()
    batches = [view.inputs(torch.arange(i * 24, i * 24 + 24)) for i in range(12)]
    want = [digits_teacher.guide(x) for x in batches]
    with ServerThread(create_app(digits_teacher, max_concurrency=3, max_queue=16, allow_unauthenticated=True)) as srv:
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda x: _post(srv.url, x), batches))
    for r, w in zip(responses, want):
        assert r.status_code == 200
        got, _ = decode(r.content, SAFETENSORS, OUTPUT_NAMES)
        assert torch.equal(torch.from_numpy(got["logits"].copy()), w.logits)
        assert torch.equal(torch.from_numpy(got["features"].copy()), w.features)


def test_requests_run_concurrently_up_to_the_bound(digits_teacher: LocalTeacher) -> None:
    slow = SlowTeacher(digits_teacher.info, delay=0.4)
    x = torch.zeros(2, 1, 8, 8)
    with ServerThread(create_app(slow, max_concurrency=2, max_queue=4, allow_unauthenticated=True)) as srv:
        with ThreadPoolExecutor(4) as pool:
            codes = [r.status_code for r in pool.map(lambda _: _post(srv.url, x), range(4))]
    assert codes == [200] * 4
    # Two at once (the requests overlapped), never more. Counted by the teacher itself rather
    # than timed: a wall-clock bound fails on a loaded machine without saying anything.
    assert slow.peak == 2


def test_overload_is_answered_503_not_queued_without_bound(digits_teacher: LocalTeacher) -> None:
    slow = SlowTeacher(digits_teacher.info, delay=0.5)
    x = torch.zeros(1, 1, 8, 8)
    app = create_app(slow, max_concurrency=1, max_queue=1, allow_unauthenticated=True)
    with ServerThread(app) as srv:
        barrier = threading.Barrier(8)

        def fire(_: int) -> httpx.Response:
            barrier.wait(timeout=10)
            return _post(srv.url, x)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(fire, range(8)))
        health = httpx.get(f"{srv.url}/healthz", trust_env=False).json()
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503}
    assert 2 <= codes.count(200) < 8     # one computing + one queued at a time, the rest refused
    busy = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and "busy" in r.json()["error"] for r in busy)
    assert slow.peak == 1
    assert health["pending"] == 0 and health["refused_busy"] == len(busy)


@pytest.mark.slow
def test_remote_teachers_ride_out_overload_by_retrying(digits_teacher: LocalTeacher) -> None:
    slow = SlowTeacher(digits_teacher.info, delay=0.1)
    x = torch.randn(3, 1, 8, 8)
    with ServerThread(create_app(slow, max_concurrency=1, max_queue=0, allow_unauthenticated=True)) as srv:
        clients = [RemoteTeacher(srv.url, retry_budget=20) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda c: c.guide(x), clients))
        retries = sum(c.stats["retries"] for c in clients)
        for c in clients:
            c.close()
    want = slow.guide(x)
    assert all(torch.equal(g.logits, want.logits) for g in results)
    assert retries >= 1  # someone was refused with 503 and came back
