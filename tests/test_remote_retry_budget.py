"""One retry budget per remote teacher, however many threads ask it: a training run with
guidance prefetch stops after ``--teacher-retry-budget`` seconds of outage, not twice that.

A real server on loopback is brought up so that the client connects, then stopped: every later
request meets a closed port, as when the cloud teacher goes down.
"""
from __future__ import annotations

import time

import pytest
import torch

from lnpt.config import TrainConfig
from lnpt.errors import ConfigError
from lnpt.models import create_model, feature_dim
from lnpt.serve import RemoteTeacher, TeacherUnavailableError
from lnpt.serve.background import ServerThread
from lnpt.serve.server import create_app
from lnpt.teachers import teacher_guidance
from lnpt.train import FitOptions, LossContext, create_loss, fit

BUDGET = 1.0


def _remote_of_a_stopped_server(teacher) -> tuple[RemoteTeacher, int]:
    with ServerThread(create_app(teacher, allow_unauthenticated=True)) as srv:
        remote = RemoteTeacher(srv.url, retry_budget=BUDGET, timeout=2)
        port = srv.port
    return remote, port


def test_a_second_caller_does_not_get_a_second_budget(digits_teacher) -> None:
    remote, _ = _remote_of_a_stopped_server(digits_teacher)
    x = torch.zeros(2, 1, 8, 8)
    with remote:
        t0 = time.monotonic()
        with pytest.raises(TeacherUnavailableError, match="unavailable for 1s"):
            remote.guide(x)
        first = time.monotonic() - t0
        t1 = time.monotonic()
        with pytest.raises(TeacherUnavailableError):
            remote.guide(x)  # another caller (the prefetch thread) during the same outage
        second = time.monotonic() - t1
    assert BUDGET * 0.9 < first < BUDGET + 1.0
    assert second < 0.3  # tried once, no second budget


def test_a_success_refills_the_budget(digits_teacher) -> None:
    remote, port = _remote_of_a_stopped_server(digits_teacher)
    x = torch.zeros(2, 1, 8, 8)
    with remote:
        with pytest.raises(TeacherUnavailableError):
            remote.guide(x)
        with ServerThread(create_app(digits_teacher, allow_unauthenticated=True), port=port):
            assert remote.guide(x).logits.shape == (2, 10)  # back: the outage is over
        t0 = time.monotonic()
        with pytest.raises(TeacherUnavailableError):
            remote.guide(x)
        assert time.monotonic() - t0 > BUDGET * 0.9  # a new outage, a full budget


@pytest.mark.slow
def test_training_with_prefetch_stops_after_one_budget(digits, digits_teacher) -> None:
    remote, _ = _remote_of_a_stopped_server(digits_teacher)
    info = digits.info
    student = create_model("lenet5", info.input_shape, info.num_classes, 1.0, seed=1)
    cfg = TrainConfig(loss="lnpt", epochs=1, lr=0.05)
    loss = create_loss(cfg, LossContext(feature_dim(student), remote.info.feature_dim))
    t0 = time.monotonic()
    with remote, pytest.raises(TeacherUnavailableError):
        guidance = teacher_guidance(remote, digits.train.unlabeled(), augment=False, cache=False, prefetch="on")
        fit(student, loss, digits.train, cfg, guidance=guidance, options=FitOptions(batch_size=64))
    elapsed = time.monotonic() - t0
    assert elapsed < BUDGET + 0.6, elapsed  # before: 2x the budget (prefetch spent a second one)


@pytest.mark.parametrize("kwargs, match", [
    ({"timeout": 0}, "--teacher-timeout must be a number of seconds > 0"),
    ({"timeout": -5}, "--teacher-timeout"),
    ({"timeout": float("nan")}, "--teacher-timeout"),
    ({"retry_budget": -1}, "--teacher-retry-budget must be a number of seconds >= 0"),
    ({"retry_budget": float("inf")}, "--teacher-retry-budget"),
])
def test_impossible_timeouts_are_refused_before_any_request(kwargs: dict, match: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=match) as err:
        RemoteTeacher("http://127.0.0.1:9", **kwargs)  # nothing listens: a request would retry
    assert time.monotonic() - t0 < 0.5 and "\n" not in str(err.value)
