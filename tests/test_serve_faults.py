"""Killing the teacher server in the middle of a label-free training run does not lose the run.

A real ``lnpt teacher serve`` child process is SIGKILLed mid-epoch. Either the client waits and
retries until the restarted server answers, or (budget exhausted) the run stops at its last
epoch checkpoint and ``resume`` finishes it. Both must end with the same weights as an
uninterrupted run with the in-process teacher, *bitwise*: the server runs the same weights
(checked by fingerprint) with the same torch build and thread count on the very same batches,
and float32 crosses the wire losslessly, so every guidance tensor is bit-identical; the trainer
is deterministic given its guidance (seeded order, step-wise learning rate, resumable state).
"""
from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest
import torch

from lnpt.config import TrainConfig
from lnpt.errors import LnptError
from lnpt.models import create_model, feature_dim
from lnpt.serve import RemoteTeacher, TeacherUnavailableError
from lnpt.serve.background import ServerProcess
from lnpt.teachers import Guidance, Teacher, teacher_guidance
from lnpt.train import Checkpoint, FitOptions, LossContext, create_loss, fit

pytestmark = pytest.mark.slow

EPOCHS, BATCH = 3, 64
STEPS_PER_EPOCH = 21  # ceil(1293 digits training samples / 64)


def _train(digits, teacher: Teacher, loss_name: str, run_dir: Path | None = None,
           resume: bool = False) -> dict[str, torch.Tensor]:
    """A label-free run from a fixed initialisation; returns student + loss (adapter) weights."""
    info = digits.info
    torch.manual_seed(0)  # the LNPT loss's feature adapter draws its init from the global RNG
    student = create_model("lenet5", info.input_shape, info.num_classes, 1.0, seed=1)
    cfg = TrainConfig(loss=loss_name, epochs=EPOCHS, lr=0.05)
    loss = create_loss(cfg, LossContext(feature_dim(student), teacher.info.feature_dim))
    fit(student, loss, digits.train, cfg,
        guidance=teacher_guidance(teacher, digits.train.unlabeled(), augment=False, cache=False),
        callbacks=[Checkpoint(run_dir, resume=resume)] if run_dir is not None else [],
        options=FitOptions(batch_size=BATCH, seed=0))
    return {**{f"student.{k}": v for k, v in student.state_dict().items()},
            **{f"loss.{k}": v for k, v in loss.state_dict().items()}}


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs by {(a[k] - b[k]).abs().max().item()}"


class KillOnCall(Teacher):
    """Passes guidance through from ``remote``; just before call number ``at`` runs ``action``
    (which kills the server): the failure hits in the middle of an epoch."""

    def __init__(self, remote: RemoteTeacher, at: int, action) -> None:
        self.remote, self.at, self.action = remote, at, action
        self.info = remote.info
        self.calls = 0

    def guide(self, x: torch.Tensor) -> Guidance:
        self.calls += 1
        if self.calls == self.at:
            self.action()
        return self.remote.guide(x)


@pytest.fixture(scope="module")
def reference(digits, digits_teacher) -> dict[str, dict[str, torch.Tensor]]:
    """Uninterrupted runs with the in-process teacher, per loss."""
    return {name: _train(digits, digits_teacher, name) for name in ("lnpt", "pseudo")}


def test_remote_teacher_trains_identically_to_in_process(digits, digits_teacher_path, reference, tmp_path) -> None:
    with ServerProcess(digits_teacher_path, log_path=tmp_path / "server.log") as server:
        with RemoteTeacher(server.url, retry_budget=30) as remote:
            weights = _train(digits, remote, "pseudo")
            assert remote.stats["requests"] == 1 + EPOCHS * STEPS_PER_EPOCH  # really called, no cache
    _assert_bitwise_equal(weights, reference["pseudo"])


def test_server_killed_mid_epoch_and_restarted_the_client_waits(digits, digits_teacher_path, reference,
                                                                tmp_path) -> None:
    log = tmp_path / "server.log"
    server = ServerProcess(digits_teacher_path, log_path=log).start()
    restarter: list[threading.Thread] = []

    def crash_and_come_back() -> None:
        server.kill()
        t = threading.Thread(target=server.start, daemon=True)  # back on the same port in a few s
        t.start()
        restarter.append(t)

    try:
        with RemoteTeacher(server.url, retry_budget=60) as remote:
            teacher = KillOnCall(remote, at=STEPS_PER_EPOCH + 7, action=crash_and_come_back)  # epoch 2
            weights = _train(digits, teacher, "lnpt", run_dir=tmp_path / "run")
            assert remote.stats["retries"] >= 1 and remote.stats["seconds_waited"] > 0
        restarter[0].join(timeout=60)
    finally:
        server.kill()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert sum(line["msg"] == "teacher ready" for line in lines) == 2  # it really went down and up
    _assert_bitwise_equal(weights, reference["lnpt"])


def test_budget_exhausted_stops_cleanly_and_resume_finishes_identically(digits, digits_teacher_path,
                                                                        reference, tmp_path) -> None:
    run = tmp_path / "run"
    server = ServerProcess(digits_teacher_path, log_path=tmp_path / "server.log").start()
    try:
        with RemoteTeacher(server.url, retry_budget=1.0) as remote:
            teacher = KillOnCall(remote, at=STEPS_PER_EPOCH + 5, action=server.kill)  # mid epoch 2
            with pytest.raises(TeacherUnavailableError, match="resume") as err:
                _train(digits, teacher, "lnpt", run_dir=run)
        assert isinstance(err.value, LnptError)  # the CLI prints it as one line, no traceback
        state = torch.load(run / "train_state.pt", weights_only=True)
        assert state["epoch"] == 1  # the last complete epoch is on disk
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 1

        server.start()
        with RemoteTeacher(server.url, retry_budget=30) as remote:
            weights = _train(digits, remote, "lnpt", run_dir=run, resume=True)
            assert remote.stats["requests"] == 1 + (EPOCHS - 1) * STEPS_PER_EPOCH  # only epochs 2-3
    finally:
        server.kill()
    _assert_bitwise_equal(weights, reference["lnpt"])


def test_sigterm_shuts_down_gracefully(digits_teacher_path, digits, tmp_path) -> None:
    log = tmp_path / "server.log"
    server = ServerProcess(digits_teacher_path, log_path=log, token="t0k").start()
    try:
        with RemoteTeacher(server.url, token="t0k", retry_budget=5) as remote:
            remote.guide(digits.train.unlabeled().inputs(torch.arange(8)))
        code = server.stop(timeout=20)
    finally:
        server.kill()
    # uvicorn drains, runs the shutdown hooks, then re-raises SIGTERM so supervisors see it
    assert code in (0, -signal.SIGTERM)
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is JSON
    msgs = [line["msg"] for line in lines]
    assert "teacher stopped" in msgs and msgs.index("teacher stopped") > msgs.index("teacher ready")
    guides = [line for line in lines if line.get("path") == "/v1/guide"]
    assert len(guides) == 1 and guides[0]["status"] == 200 and guides[0]["batch"] == 8
    assert "t0k" not in log.read_text()  # the token never reaches the log

