"""``lnpt teacher serve`` wiring and the client's behaviour when no server is there."""
from __future__ import annotations

import time

import pytest

from lnpt.cli import build_parser, main
from lnpt.serve import RemoteTeacher, TeacherUnavailableError
from lnpt.serve.background import free_port
from lnpt.serve.server import create_app


def test_serve_is_a_teacher_action_with_its_flags() -> None:
    args = build_parser().parse_args(
        ["teacher", "serve", "--checkpoint", "t.pt", "--port", "8123", "--max-batch", "32",
         "--max-concurrency", "3", "--max-queue", "5", "--max-body-mb", "2"])
    assert args.teacher_command == "serve"
    assert (args.checkpoint, args.host, args.port) == ("t.pt", "127.0.0.1", 8123)  # loopback by default
    assert (args.max_batch, args.max_concurrency, args.max_queue, args.max_body_mb) == (32, 3, 5, 2.0)
    assert args.token is None


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys) -> None:
    code = main(["teacher", "serve", "--checkpoint", str(tmp_path / "nope.pt"), "--port", str(free_port()),
                 "--no-auth"])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not exist" in err and "Traceback" not in err


def test_invalid_limits_are_refused(digits_teacher) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        create_app(digits_teacher, max_concurrency=0, allow_unauthenticated=True)


def test_unreachable_server_fails_within_the_budget() -> None:
    t0 = time.monotonic()
    with pytest.raises(TeacherUnavailableError, match="unavailable for 0.5s.*resume"):
        RemoteTeacher(f"http://127.0.0.1:{free_port()}", retry_budget=0.5, timeout=2)
    assert time.monotonic() - t0 < 3.0


def _prune_args(teacher: str, out, *extra: str) -> list[str]:
    return ["prune", "--teacher", teacher, "--model", "lenet5", "--dataset", "digits", "--criterion", "lnpt",
            "--sparsity", "0.9", "--batches", "2", "--score-batch-size", "64", "--out", str(out), *extra]


def test_prune_takes_a_server_address_where_it_takes_a_checkpoint(digits_teacher, digits_teacher_path,
                                                                   tmp_path, capsys, monkeypatch) -> None:
    import torch

    from lnpt.checkpoint import load_checkpoint
    from lnpt.serve.background import ServerThread

    assert main(_prune_args(str(digits_teacher_path), tmp_path / "local")) == 0
    monkeypatch.setenv("LNPT_TEACHER_TOKEN", "s3cret")
    with ServerThread(create_app(digits_teacher, token="s3cret")) as srv:
        assert main(_prune_args(srv.url, tmp_path / "remote")) == 0
        monkeypatch.setenv("LNPT_TEACHER_TOKEN", "wrong")
        assert main(_prune_args(srv.url, tmp_path / "refused")) == 2
    err = capsys.readouterr().err
    assert "refused the token" in err and len(err.strip().splitlines()) == 1
    local = load_checkpoint(tmp_path / "local" / "student_init.pt").state_dict
    remote = load_checkpoint(tmp_path / "remote" / "student_init.pt").state_dict
    assert local.keys() == remote.keys()
    assert all(torch.equal(local[k], remote[k]) for k in local)  # same masks, same weights
    assert not (tmp_path / "refused").exists()


def test_prune_refuses_a_served_teacher_for_other_data(digits, tmp_path, capsys) -> None:
    import dataclasses

    from lnpt.models import create_model, feature_dim
    from lnpt.serve.background import ServerThread
    from lnpt.teachers import LocalTeacher, TeacherInfo

    info5 = dataclasses.replace(digits.info, num_classes=5)
    model = create_model("lenet5", info5.input_shape, 5, seed=0)
    teacher = LocalTeacher(model, TeacherInfo("lenet5", 1.0, feature_dim(model), info5))
    with ServerThread(create_app(teacher, allow_unauthenticated=True)) as srv:
        assert main(_prune_args(srv.url, tmp_path / "pruned")) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and "5 classes vs the data's 10" in err
