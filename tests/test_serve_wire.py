"""The wire format on its own: exact round trips and refusals of hostile bodies (no server)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from lnpt.teachers.wire import (
    INPUT_NAMES,
    JSON,
    NPY,
    OUTPUT_NAMES,
    SAFETENSORS,
    Limits,
    WireError,
    decode,
    encode,
    media_type,
    validate_inputs,
)

SHAPE = (1, 8, 8)


def _batch(n: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", [SAFETENSORS, NPY, JSON])
def test_round_trip_is_bit_exact_in_every_format(fmt: str) -> None:
    logits, feats = torch.randn(7, 10), torch.randn(7, 168) * 1e-30  # tiny values must survive JSON too
    body = encode({"logits": logits, "features": feats}, fmt)
    arrays, _ = decode(body, fmt, OUTPUT_NAMES)
    assert arrays["logits"].dtype == np.float32
    assert np.array_equal(arrays["logits"], logits.numpy())
    assert np.array_equal(arrays["features"], feats.numpy())


def test_binary_formats_are_much_smaller_than_json() -> None:
    x = _batch(32)
    sizes = {fmt: len(encode({"inputs": x}, fmt)) for fmt in (SAFETENSORS, NPY, JSON)}
    raw = x.numel() * 4
    assert raw <= sizes[SAFETENSORS] < raw + 256 and raw <= sizes[NPY] < raw + 256
    assert sizes[JSON] > 3 * sizes[SAFETENSORS]


def test_safetensors_metadata_travels() -> None:
    body = encode({"logits": torch.zeros(1, 2), "features": torch.zeros(1, 3)}, SAFETENSORS, {"teacher": "abc"})
    _, meta = decode(body, SAFETENSORS, OUTPUT_NAMES)
    assert meta["teacher"] == "abc"


@pytest.mark.parametrize("fmt,body", [
    (SAFETENSORS, b"\x00" * 3),
    (SAFETENSORS, b"\xff" * 64),
    (SAFETENSORS, (10**6).to_bytes(8, "little") + b"{}"),
    (NPY, b"not numpy at all"),
    (JSON, b"{not json"),
    (JSON, b"[1, 2, 3]"),
    (JSON, b'{"inputs": [[1, 2], [3]]}'),
    (JSON, b"[" * 100_000 + b"]" * 100_000),
    (SAFETENSORS, b""),
])
def test_malformed_bodies_are_wire_errors(fmt: str, body: bytes) -> None:
    with pytest.raises(WireError) as err:
        decode(body, fmt, INPUT_NAMES)
    assert 400 <= err.value.status < 500


def test_truncated_safetensors_is_refused() -> None:
    body = encode({"inputs": _batch()}, SAFETENSORS)
    with pytest.raises(WireError, match="malformed safetensors"):
        decode(body[:-10], SAFETENSORS, INPUT_NAMES)


def test_npy_header_promising_huge_array_is_refused_before_allocating() -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 1, 8, 8)})
    body = buf.getvalue() + b"\x00" * 64
    with pytest.raises(WireError, match="truncated"):
        decode(body, NPY, INPUT_NAMES)


def test_npy_object_arrays_are_refused() -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    with pytest.raises(WireError, match="dtype") as err:
        decode(buf.getvalue() + b"\x00" * 8, NPY, INPUT_NAMES)
    assert err.value.status == 422


def test_npy_trailing_garbage_and_missing_arrays_are_refused() -> None:
    one = encode({"inputs": _batch()}, NPY)
    with pytest.raises(WireError, match="trailing"):
        decode(one + b"xx", NPY, INPUT_NAMES)
    with pytest.raises(WireError, match="expected 2"):
        decode(one, NPY, OUTPUT_NAMES)


def test_fortran_order_npy_is_read_correctly() -> None:
    a = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    arrays, _ = decode(buf.getvalue(), NPY, INPUT_NAMES)
    assert np.array_equal(arrays["inputs"], a)


def test_wrong_tensor_names_are_refused() -> None:
    body = encode({"images": _batch()}, SAFETENSORS)
    with pytest.raises(WireError, match="expected tensor"):
        decode(body, SAFETENSORS, INPUT_NAMES)
    with pytest.raises(WireError, match="unexpected field"):
        decode(json.dumps({"inputs": [[0.0]], "labels": [1]}).encode(), JSON, INPUT_NAMES)


def test_validation_reasons_and_statuses() -> None:
    lim = Limits(max_batch=4, max_body_bytes=10**6)
    ok = _batch(4).numpy()
    assert validate_inputs(ok, SHAPE, lim) is ok
    cases = [
        (ok.astype(np.float64), "float32", 422),
        (ok[:, :, :4], "shape", 422),
        (ok[0], "shape", 422),
        (ok[:0], "empty", 422),
        (_batch(5).numpy(), "limit of 4", 413),
    ]
    nan = ok.copy()
    nan[1, 0, 0, 0] = np.nan
    nan[3, 0, 2, 2] = np.inf
    cases.append((nan, r"NaN or infinite values \(2 of 4", 422))
    for x, reason, status in cases:
        with pytest.raises(WireError, match=reason) as err:
            validate_inputs(x, SHAPE, lim)
        assert err.value.status == status


def test_media_type_negotiation() -> None:
    assert media_type(None) == SAFETENSORS
    assert media_type("application/vnd.lnpt.npy; charset=binary") == NPY
    assert media_type("text/html, application/json") == JSON
    assert media_type("*/*", default=NPY) == NPY
    with pytest.raises(WireError) as err:
        media_type("text/csv")
    assert err.value.status == 415
