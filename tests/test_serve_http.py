"""The teacher server over real HTTP on loopback (uvicorn in a thread, no mocked transport):
exact guidance, info, auth, refusals of bad requests, and that the server survives them."""
from __future__ import annotations

import json
import logging
import time

import httpx
import numpy as np
import pytest
import torch

from lnpt.errors import LnptError, TeacherMismatchError
from lnpt.serve import RemoteTeacher, TeacherAuthError, TeacherServiceError
from lnpt.serve.background import ServerThread
from lnpt.serve.logs import ACCESS_LOGGER, JsonFormatter
from lnpt.serve.server import create_app
from lnpt.teachers import LocalTeacher, load_teacher
from lnpt.teachers.wire import JSON, NPY, OUTPUT_NAMES, SAFETENSORS, Limits, decode, encode

TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def server(digits_teacher: LocalTeacher):
    app = create_app(digits_teacher, token=TOKEN, limits=Limits(64, 64 * 1024),
                     max_concurrency=2, max_queue=8)
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def inputs(digits) -> torch.Tensor:
    return digits.train.unlabeled().inputs(torch.arange(40))


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _post(server: ServerThread, body: bytes, content_type: str = SAFETENSORS,
          headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/guide", content=body, trust_env=False, timeout=10,
                      headers={"Content-Type": content_type, **_auth(), **(headers or {})})


@pytest.mark.parametrize("fmt", ["safetensors", "npy", "json"])
def test_remote_guidance_equals_in_process_bitwise(server, digits_teacher, inputs, fmt) -> None:
    with RemoteTeacher(server.url, token=TOKEN, wire_format=fmt) as remote:
        got, want = remote.guide(inputs), digits_teacher.guide(inputs)
    assert got.logits.dtype == torch.float32
    assert torch.equal(got.logits, want.logits)
    assert torch.equal(got.features, want.features)
    assert torch.equal(got.pseudo_labels, want.pseudo_labels)


def test_batches_over_the_server_limit_are_split_by_the_client(server, digits_teacher, digits) -> None:
    x = digits.train.unlabeled().inputs(torch.arange(150))  # server max_batch is 64
    with RemoteTeacher(server.url, token=TOKEN) as remote:
        got = remote.guide(x)
        assert remote.stats["requests"] == 1 + 3  # info + ceil(150 / 64)
    want = digits_teacher.guide(x)
    assert got.logits.shape == (150, 10)
    assert torch.allclose(got.logits, want.logits, atol=1e-5)
    assert torch.allclose(got.features, want.features, atol=1e-5)


def test_info_describes_the_teacher(server, digits_teacher) -> None:
    r = httpx.get(f"{server.url}/v1/info", headers=_auth(), trust_env=False)
    d = r.json()
    assert r.status_code == 200
    assert d["model"] == "lenet5" and d["num_classes"] == 10 and d["input_shape"] == [1, 8, 8]
    assert d["feature_dim"] == digits_teacher.info.feature_dim
    assert d["dataset"]["mean"] == list(digits_teacher.info.dataset.mean)
    assert d["dataset"]["std"] == list(digits_teacher.info.dataset.std)
    assert d["limits"] == {"max_batch": 64, "max_body_bytes": 64 * 1024}
    with RemoteTeacher(server.url, token=TOKEN) as remote:
        assert remote.info == digits_teacher.info


def test_load_teacher_accepts_a_server_address(server, digits_teacher, monkeypatch) -> None:
    monkeypatch.setenv("LNPT_TEACHER_TOKEN", TOKEN)  # the token may come from the environment
    teacher = load_teacher(server.url, "digits")
    try:
        assert isinstance(teacher, RemoteTeacher)
        assert teacher.info == digits_teacher.info
    finally:
        teacher.close()


def test_without_the_right_token_there_is_no_guidance(server, inputs) -> None:
    body = encode({"inputs": inputs[:2]}, SAFETENSORS)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = httpx.post(f"{server.url}/v1/guide", content=body, trust_env=False,
                       headers={"Content-Type": SAFETENSORS, **headers})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "logits" not in r.text and b"\x00" not in r.content
    assert httpx.get(f"{server.url}/v1/info", trust_env=False).status_code == 401
    assert httpx.get(f"{server.url}/healthz", trust_env=False).json()["status"] == "ok"  # probes stay open
    with pytest.raises(TeacherAuthError, match="LNPT_TEACHER_TOKEN"):
        RemoteTeacher(server.url, token="wrong", retry_budget=0)


def test_bad_requests_get_a_4xx_with_a_reason(server, inputs) -> None:
    x = inputs[:4].numpy()
    nan = x.copy()
    nan[2, 0, 3, 3] = np.nan
    big = np.zeros((65, 1, 8, 8), np.float32)
    cases = [
        (b"\x00\x01garbage", SAFETENSORS, 400, "malformed safetensors"),
        (b"{oops", JSON, 400, "malformed JSON"),
        (encode({"inputs": x}, NPY)[:-7], NPY, 400, "truncated"),
        (encode({"inputs": x}, SAFETENSORS), "text/csv", 415, "unsupported media type"),
        (encode({"inputs": x[:, :, :4]}, SAFETENSORS), SAFETENSORS, 422, "shape"),
        (encode({"inputs": x.reshape(4, 64)}, NPY), NPY, 422, "shape"),
        (encode({"inputs": x.astype(np.float64)}, SAFETENSORS), SAFETENSORS, 422, "float32"),
        (encode({"inputs": nan}, SAFETENSORS), SAFETENSORS, 422, "NaN"),
        (encode({"inputs": big}, SAFETENSORS), SAFETENSORS, 413, "limit of 64"),
        (encode({"inputs": x[:0]}, SAFETENSORS), SAFETENSORS, 422, "empty batch"),
        (encode({"images": x}, SAFETENSORS), SAFETENSORS, 400, "expected tensor"),
    ]
    for body, ctype, status, reason in cases:
        r = _post(server, body, ctype)
        assert r.status_code == status, (reason, r.text)
        assert reason in r.json()["error"]
    ok = _post(server, encode({"inputs": x}, SAFETENSORS))  # the server lived through all of that
    assert ok.status_code == 200


def test_oversized_bodies_are_refused_without_reading_them_whole(server) -> None:
    declared = _post(server, b"\x00" * (200 * 1024))
    assert declared.status_code == 413 and "exceeds" in declared.json()["error"]

    def chunks():  # no Content-Length: the server must count while it reads
        for _ in range(20):
            yield b"\x00" * 8192

    streamed = httpx.post(f"{server.url}/v1/guide", content=chunks(), trust_env=False, timeout=10,
                          headers={"Content-Type": SAFETENSORS, **_auth()})
    assert streamed.status_code == 413
    assert httpx.get(f"{server.url}/healthz", trust_env=False).status_code == 200


def test_client_refuses_wrong_input_shapes_before_sending(server, inputs) -> None:
    with RemoteTeacher(server.url, token=TOKEN) as remote:
        with pytest.raises(TeacherMismatchError, match=r"\(N, 1, 8, 8\)"):
            remote.guide(torch.zeros(3, 1, 28, 28))
        assert remote.stats["requests"] == 1  # only the info request went out


def test_client_4xx_is_a_one_line_library_error(server) -> None:
    with RemoteTeacher(server.url, token=TOKEN) as remote:
        nan = torch.full((2, 1, 8, 8), float("nan"))
        with pytest.raises(TeacherServiceError, match="422.*NaN") as err:
            remote.guide(nan)
        assert isinstance(err.value, LnptError)
        assert remote.stats["retries"] == 0  # a 4xx is never retried


def test_responses_carry_the_teacher_fingerprint_and_request_id(server, inputs) -> None:
    r = _post(server, encode({"inputs": inputs[:3]}, SAFETENSORS),
              headers={"Accept": NPY, "X-Request-ID": "abc123"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(NPY)  # Accept picks the answer's format
    assert r.headers["x-request-id"] == "abc123"
    arrays, _ = decode(r.content, NPY, OUTPUT_NAMES)
    assert arrays["logits"].shape == (3, 10)
    health = httpx.get(f"{server.url}/healthz", trust_env=False).json()
    assert r.headers["x-lnpt-teacher"] == health["teacher"]


def test_access_log_is_structured(server, inputs, caplog) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    nan = inputs[:2].clone()
    nan[0, 0, 0, 0] = float("inf")
    _post(server, encode({"inputs": nan}, SAFETENSORS), headers={"X-Request-ID": "log-me"})
    deadline = time.monotonic() + 5  # the line is written just after the answer is sent
    while True:
        records = [r for r in caplog.records if r.name == ACCESS_LOGGER and r.fields["request_id"] == "log-me"]
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["status"] == 422 and line["path"] == "/v1/guide" and line["method"] == "POST"
    assert "NaN" in line["reason"] and line["bytes_in"] > 0 and line["ms"] >= 0


def test_client_rejects_a_teacher_for_other_data(server, digits) -> None:
    from dataclasses import replace

    other = replace(digits.info, name="other", num_classes=3)
    with pytest.raises(TeacherMismatchError, match="3"):
        RemoteTeacher(server.url, token=TOKEN, dataset=other)


def test_client_refuses_a_server_restarted_with_another_teacher(digits_teacher, inputs) -> None:
    import copy

    changed = copy.deepcopy(digits_teacher)
    with torch.no_grad():
        next(changed.model.parameters()).add_(1e-3)
    with ServerThread(create_app(digits_teacher, allow_unauthenticated=True)) as first:
        port = first.port
        remote = RemoteTeacher(first.url, retry_budget=10)
        remote.guide(inputs[:2])
    with ServerThread(create_app(changed, allow_unauthenticated=True), port=port), remote:
        with pytest.raises(TeacherMismatchError, match="different teacher"):
            remote.guide(inputs[:2])
