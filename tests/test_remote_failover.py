"""A remote teacher with several server addresses: requests spread over them, a server that goes
down is failed over within the shared retry budget, servers that serve different teachers are
refused, and one clear line says when all are down. Real uvicorn servers on loopback."""
from __future__ import annotations

import copy

import pytest
import torch

from lnpt.errors import ConfigError, TeacherMismatchError
from lnpt.serve import RemoteTeacher, TeacherUnavailableError
from lnpt.serve.background import ServerThread, free_port
from lnpt.serve.server import create_app
from lnpt.teachers import LocalTeacher, load_teacher


def _app(teacher: LocalTeacher):
    return create_app(teacher, allow_unauthenticated=True)


def _other_teacher(teacher: LocalTeacher) -> LocalTeacher:
    """Same architecture and data, other weights: another fingerprint."""
    model = copy.deepcopy(teacher.model)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    return LocalTeacher(model, teacher.info)


def test_requests_spread_and_fail_over_when_a_server_stops(digits_teacher, digits) -> None:
    x = digits.train.unlabeled().inputs(torch.arange(16))
    want = digits_teacher.guide(x)
    a = ServerThread(_app(digits_teacher)).__enter__()
    try:
        with ServerThread(_app(digits_teacher)) as b:
            remote = RemoteTeacher(f"{a.url},{b.url}", retry_budget=5, timeout=5)
            for _ in range(6):
                assert torch.equal(remote.guide(x).logits, want.logits)
            assert remote.answered() == {a.url: 3, b.url: 3}  # one client thread: in turn
        for _ in range(6):  # b is gone: every request ends up on a
            g = remote.guide(x)
            assert torch.equal(g.logits, want.logits) and torch.equal(g.features, want.features)
        assert remote.answered() == {a.url: 9, b.url: 3}
        assert remote.stats["failovers"] >= 1 and remote.stats["retries"] == 0  # no waiting: a answered
        remote.close()
    finally:
        a.__exit__(None, None, None)


def test_servers_of_different_teachers_are_refused_in_one_line(digits_teacher) -> None:
    with ServerThread(_app(digits_teacher)) as a, ServerThread(_app(_other_teacher(digits_teacher))) as b:
        with pytest.raises(TeacherMismatchError, match="teacher servers disagree") as err:
            RemoteTeacher([a.url, b.url], retry_budget=2)
    assert "\n" not in str(err.value) and f"{b.url} serves teacher" in str(err.value) and a.url in str(err.value)


def test_a_server_down_at_the_start_is_checked_on_its_first_answer(digits_teacher) -> None:
    port = free_port()
    x = torch.zeros(2, 1, 8, 8)
    with ServerThread(_app(digits_teacher)) as a:
        remote = RemoteTeacher(f"{a.url},http://127.0.0.1:{port}", retry_budget=5)  # second one not up
        with ServerThread(_app(_other_teacher(digits_teacher)), port=port):
            with pytest.raises(TeacherMismatchError, match="teacher servers disagree"):
                for _ in range(4):  # in turn: the second server answers within two requests
                    remote.guide(x)
        remote.close()


def test_all_servers_down_is_one_clear_line(digits_teacher) -> None:
    with ServerThread(_app(digits_teacher)) as a, ServerThread(_app(digits_teacher)) as b:
        remote = RemoteTeacher([a.url, b.url], retry_budget=0.5, timeout=2)
    with pytest.raises(TeacherUnavailableError) as err:
        remote.guide(torch.zeros(1, 1, 8, 8))
    message = str(err.value)
    assert "\n" not in message
    assert f"all 2 teacher servers ({a.url}, {b.url}) were unavailable for 0.5s" in message
    remote.close()


def test_the_teacher_flag_takes_comma_separated_addresses(digits_teacher) -> None:
    with ServerThread(_app(digits_teacher)) as a, ServerThread(_app(digits_teacher)) as b:
        teacher = load_teacher(f"{a.url}, {b.url}/", "digits")
        assert isinstance(teacher, RemoteTeacher) and teacher.urls == [a.url, b.url]
        teacher.close()
    with pytest.raises(ConfigError, match="http"):
        RemoteTeacher("http://127.0.0.1:1,ftp://127.0.0.1:2")
