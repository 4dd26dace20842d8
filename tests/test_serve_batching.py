"""Dynamic batching on a real server on loopback: concurrent requests merged into fewer forwards,
each answered with exactly its own rows; bad or failing requests stay alone in their error;
deadlines hold; a request larger than the dynamic batch still works; off means as before."""
from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from lnpt.cli import main
from lnpt.serve import Batching, ClientLimits
from lnpt.serve.background import ServerThread, free_port
from lnpt.serve.server import create_app
from lnpt.teachers import Guidance, LocalTeacher
from lnpt.teachers.wire import OUTPUT_NAMES, SAFETENSORS, decode, encode

POISON = 1234.0  # a finite value (it passes validation) that makes FragileTeacher raise


class DelayedTeacher:
    """The real teacher, ``delay`` seconds slower per forward, so that requests pile up behind
    a running forward however fast or loaded the machine is (counted, not timed). Raises on any
    batch holding :data:`POISON`, like a teacher that breaks on one odd input."""

    def __init__(self, teacher: LocalTeacher, delay: float) -> None:
        self.teacher, self.delay, self.info, self.model = teacher, delay, teacher.info, None
        self.sizes: list[int] = []

    def __deepcopy__(self, memo: dict) -> "DelayedTeacher":
        """A replica (the unbatched server makes one per worker) with its own network, same log."""
        twin = DelayedTeacher(copy.deepcopy(self.teacher, memo), self.delay)
        twin.sizes = self.sizes
        return twin

    def guide(self, x: torch.Tensor) -> Guidance:
        self.sizes.append(len(x))
        time.sleep(self.delay)
        if bool((x == POISON).any()):
            raise RuntimeError("teacher broke on this input")
        return self.teacher.guide(x)


def _post(url: str, x: torch.Tensor) -> httpx.Response:
    return httpx.post(f"{url}/v1/guide", content=encode({"inputs": x}, SAFETENSORS), trust_env=False,
                      headers={"Content-Type": SAFETENSORS}, timeout=30)


def _outputs(r: httpx.Response) -> tuple[torch.Tensor, torch.Tensor]:
    assert r.status_code == 200, r.text
    got, _ = decode(r.content, SAFETENSORS, OUTPUT_NAMES)
    return torch.from_numpy(got["logits"].copy()), torch.from_numpy(got["features"].copy())


def _fire(url: str, batches: list[torch.Tensor]) -> list[httpx.Response]:
    """All batches at once from their own threads (a barrier lines them up)."""
    barrier = threading.Barrier(len(batches))

    def one(x: torch.Tensor) -> httpx.Response:
        barrier.wait(timeout=20)
        return _post(url, x)

    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(one, batches))


def _health(url: str) -> dict:
    return httpx.get(f"{url}/healthz", trust_env=False).json()


@pytest.mark.parametrize("batching", [Batching(64, 20.0), Batching(0)], ids=["batched", "off"])
def test_concurrent_requests_get_their_own_rows(digits_teacher: LocalTeacher, digits, batching) -> None:
    view = digits.train.unlabeled()
    sizes = [1, 3, 7, 2, 5, 8, 4, 6, 1, 9, 3, 2]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    batches = [view.inputs(torch.arange(s, s + n)) for s, n in zip(starts, sizes)]
    want = [digits_teacher.guide(x) for x in batches]  # each alone, eval mode
    slow = DelayedTeacher(digits_teacher, 0.3)
    app = create_app(slow, max_concurrency=2, max_queue=32, allow_unauthenticated=True, batching=batching)
    with ServerThread(app) as srv:
        responses = _fire(srv.url, batches)
        health = _health(srv.url)
    for r, w in zip(responses, want):
        logits, features = _outputs(r)
        torch.testing.assert_close(logits, w.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(features, w.features, rtol=1e-5, atol=1e-5)
    assert health["served"] == len(batches) and health["pending"] == 0
    assert health["forward_images"] == sum(sizes) == sum(slow.sizes)
    assert health["dynamic_batch"] == batching.max_images
    if batching.on:
        # 12 requests behind a 0.3 s forward: merged, never beyond the dynamic batch
        assert health["forwards"] < len(batches) and max(slow.sizes) <= 64
    else:
        assert health["forwards"] == len(batches) and sorted(slow.sizes) == sorted(sizes)  # as before


def test_a_request_larger_than_the_dynamic_batch_is_served_in_pieces(digits_teacher, digits) -> None:
    x = digits.train.unlabeled().inputs(torch.arange(30))
    want = digits_teacher.guide(x)
    app = create_app(digits_teacher, allow_unauthenticated=True, batching=Batching(8, 1.0))
    with ServerThread(app) as srv:
        logits, features = _outputs(_post(srv.url, x))
        health = _health(srv.url)
    torch.testing.assert_close(logits, want.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features, want.features, rtol=1e-5, atol=1e-5)
    assert (health["forwards"], health["forward_images"]) == (4, 30)  # 8 + 8 + 8 + 6


def test_one_failing_request_does_not_poison_its_batch(digits_teacher, digits) -> None:
    view = digits.train.unlabeled()
    batches = [view.inputs(torch.arange(i * 4, i * 4 + 4)) for i in range(6)]
    batches[2] = batches[2].clone()
    batches[2][1, 0, 0, 0] = POISON                        # the teacher raises on this one
    batches[4] = torch.zeros(2, 1, 9, 9)                   # wrong shape: refused before batching
    slow = DelayedTeacher(digits_teacher, 0.3)
    app = create_app(slow, max_queue=32, allow_unauthenticated=True, batching=Batching(64, 20.0))
    with ServerThread(app) as srv:
        responses = _fire(srv.url, batches)
        health = _health(srv.url)
    assert [r.status_code for r in responses] == [200, 200, 500, 200, 422, 200]
    assert "teacher failed" in responses[2].json()["error"]
    assert "shape" in responses[4].json()["error"]
    for i in (0, 1, 3, 5):
        torch.testing.assert_close(_outputs(responses[i])[0], digits_teacher.guide(batches[i]).logits,
                                   rtol=1e-5, atol=1e-5)
    assert health["pending"] == 0


def test_the_request_deadline_holds_while_waiting_for_a_forward(digits_teacher) -> None:
    slow = DelayedTeacher(digits_teacher, 1.5)
    app = create_app(slow, max_queue=8, allow_unauthenticated=True, batching=Batching(1, 0.0),
                     clients=ClientLimits(request_timeout=0.5))
    x = torch.zeros(1, 1, 8, 8)
    with ServerThread(app) as srv:
        responses = _fire(srv.url, [x, x, x])
        deadline = time.monotonic() + 10
        while _health(srv.url)["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        health = _health(srv.url)
    assert [r.status_code for r in responses] == [504] * 3
    assert all("not answered within 0.5s" in r.json()["error"] for r in responses)
    assert health["pending"] == 0 and health["timed_out"] == 3
    assert health["forwards"] < 3  # requests whose deadline passed in the queue were dropped


def test_serve_refuses_a_negative_dynamic_batch_in_one_line(digits_teacher_path, capsys) -> None:
    code = main(["teacher", "serve", "--checkpoint", str(digits_teacher_path), "--port", str(free_port()),
                 "--no-auth", "--dynamic-batch", "-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--dynamic-batch must be >= 0" in err and len(err.strip().splitlines()) == 1
