"""The wire format shared by the teacher server and its client.

Tensors travel as binary bodies, not JSON float lists: a float32 costs 4 bytes in binary and
about 10-20 characters as JSON text, and parsing text into floats dominates the request time
(measured in ``benchmarks/bench_serve.py``, recorded in ``docs/BENCHMARKS.md``). Three
formats, chosen by the ``Content-Type`` (request) and ``Accept`` (response) headers:

* ``application/vnd.lnpt.safetensors`` (default): one safetensors file holding the named
  tensors (``inputs``; or ``logits`` and ``features``). Safe to parse from an untrusted peer:
  a JSON header and raw little-endian data, no code.
* ``application/vnd.lnpt.npy``: the tensors as NumPy ``.npy`` streams back to back, in a fixed
  order. The header of each is checked before any memory is allocated for its data.
* ``application/json``: ``{"inputs": [[...]]}`` nested lists, for ``curl`` and for measuring
  what the binary formats save. Values round-trip exactly (float32 -> repr -> float32).

Decoding never trusts the peer: every failure is a :class:`WireError` with a reason that the
server sends back with a 4xx status.
"""
from __future__ import annotations

import ast
import io
import json
import math
from dataclasses import dataclass

import numpy as np
import torch

SAFETENSORS = "application/vnd.lnpt.safetensors"
NPY = "application/vnd.lnpt.npy"
JSON = "application/json"
FORMATS: dict[str, str] = {"safetensors": SAFETENSORS, "npy": NPY, "json": JSON}

PROTOCOL_VERSION = 1
INPUT_NAMES = ("inputs",)
OUTPUT_NAMES = ("logits", "features")
TEACHER_HEADER = "X-LNPT-Teacher"  # fingerprint of the served teacher, on every guidance reply
TOKEN_ENV = "LNPT_TEACHER_TOKEN"   # bearer token, for server and client, when no flag gives one

DEFAULT_MAX_BATCH = 1024
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class WireError(ValueError):
    """A body that cannot be decoded or is not a valid batch. ``status`` is the HTTP status a
    server should answer with; ``str(error)`` is the reason it sends."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What the server accepts; advertised in its info so a client can check before sending."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def to_dict(self) -> dict:
        return {"max_batch": self.max_batch, "max_body_bytes": self.max_body_bytes}

    @classmethod
    def from_dict(cls, d: dict) -> "Limits":
        return cls(int(d["max_batch"]), int(d["max_body_bytes"]))


def media_type(header: str | None, default: str = SAFETENSORS) -> str:
    """The format named by a Content-Type / Accept header (parameters and ``*/*`` allowed)."""
    if not header:
        return default
    for part in header.split(","):
        kind = part.split(";")[0].strip().lower()
        if kind in (SAFETENSORS, NPY, JSON):
            return kind
        if kind in ("*/*", "application/*"):
            return default
    raise WireError(f"unsupported media type {header!r}; use one of {', '.join(FORMATS.values())}", 415)


# --------------------------------------------------------------------------- encoding


def _as_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return np.ascontiguousarray(a)


def encode(tensors: dict[str, torch.Tensor | np.ndarray], fmt: str,
           metadata: dict[str, str] | None = None) -> bytes:
    """Serialise named tensors in ``fmt`` (a media type). npy keeps the dict's order."""
    arrays = {k: _as_numpy(v) for k, v in tensors.items()}
    if fmt == SAFETENSORS:
        from safetensors.numpy import save

        return save(arrays, metadata=metadata)
    if fmt == NPY:
        buf = io.BytesIO()
        for a in arrays.values():
            np.lib.format.write_array(buf, a, allow_pickle=False)
        return buf.getvalue()
    if fmt == JSON:
        return json.dumps({k: a.tolist() for k, a in arrays.items()}, allow_nan=True).encode()
    raise WireError(f"unsupported media type {fmt!r}", 415)


# --------------------------------------------------------------------------- decoding

_NPY_DTYPES = {np.dtype(d) for d in ("<f4", "<f8", "<f2", "|u1", "<i4", "<i8")}


def _read_npy(view: memoryview, pos: int) -> tuple[np.ndarray, int]:
    """One ``.npy`` array starting at ``pos``; checks the header before touching the data."""
    magic = np.lib.format.MAGIC_PREFIX
    if bytes(view[pos:pos + len(magic)]) != magic or len(view) < pos + 10:
        raise WireError("not a .npy stream (bad magic)")
    major = view[pos + 6]
    if major == 1:
        hlen, start = int.from_bytes(view[pos + 8:pos + 10], "little"), pos + 10
    elif major in (2, 3):
        if len(view) < pos + 12:
            raise WireError("truncated .npy header")
        hlen, start = int.from_bytes(view[pos + 8:pos + 12], "little"), pos + 12
    else:
        raise WireError(f"unsupported .npy version {major}")
    if hlen > 4096 or start + hlen > len(view):
        raise WireError("truncated or oversized .npy header")
    try:
        header = ast.literal_eval(bytes(view[start:start + hlen]).decode("latin1"))
        dtype = np.dtype(header["descr"])
        shape = tuple(int(s) for s in header["shape"])
        fortran = bool(header["fortran_order"])
    except Exception as exc:  # any malformed header is the peer's problem, not ours
        raise WireError(f"malformed .npy header ({type(exc).__name__})") from None
    if dtype not in _NPY_DTYPES:
        raise WireError(f"unsupported .npy dtype {dtype.str}", 422)
    if any(s < 0 for s in shape):
        raise WireError("negative .npy dimension")
    nbytes = math.prod(shape) * dtype.itemsize
    data_start = start + hlen
    if data_start + nbytes > len(view):
        raise WireError(f".npy data truncated: header promises {nbytes} bytes, "
                        f"{len(view) - data_start} present")
    flat = np.frombuffer(view[data_start:data_start + nbytes], dtype=dtype).copy()
    arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return np.ascontiguousarray(arr), data_start + nbytes


def decode(body: bytes, fmt: str, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Named arrays (exactly ``names``) and metadata from a body in ``fmt``."""
    if not body:
        raise WireError("empty body")
    arrays: dict[str, np.ndarray]
    metadata: dict[str, str] = {}
    if fmt == SAFETENSORS:
        from safetensors.numpy import load

        try:
            arrays = load(body)
            header_len = int.from_bytes(body[:8], "little")
            raw = json.loads(body[8:8 + header_len]).get("__metadata__") or {}
            metadata = {str(k): str(v) for k, v in raw.items()}
        except Exception as exc:  # SafetensorError, a dtype numpy lacks, a bad header: all 400
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise WireError(f"malformed safetensors body ({text})") from None
    elif fmt == NPY:
        view, pos, found = memoryview(body), 0, []
        while pos < len(view) and len(found) < len(names):
            arr, pos = _read_npy(view, pos)
            found.append(arr)
        if pos != len(view):
            raise WireError(f"trailing bytes after {len(names)} .npy array(s)")
        if len(found) != len(names):
            raise WireError(f"expected {len(names)} .npy array(s) ({', '.join(names)}), got {len(found)}")
        arrays = dict(zip(names, found))
    elif fmt == JSON:
        try:
            obj = json.loads(body)
            if not isinstance(obj, dict):
                raise TypeError("top level is not an object")
            arrays = {k: np.asarray(v, dtype=np.float32) for k, v in obj.items() if k in names}
            extra = set(obj) - set(names)
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:  # 1e999, a 400-digit integer
            raise WireError(f"malformed JSON body ({type(exc).__name__}: {str(exc)[:200]})") from None
        if extra:
            raise WireError(f"unexpected field(s) {sorted(extra)}; expected {list(names)}")
    else:
        raise WireError(f"unsupported media type {fmt!r}", 415)
    if set(arrays) != set(names):
        raise WireError(f"expected tensor(s) {list(names)}, got {sorted(arrays)}")
    return arrays, metadata


def validate_inputs(x: np.ndarray, input_shape: tuple[int, ...], limits: Limits) -> np.ndarray:
    """Check a decoded batch against what the teacher accepts; 413/422 reasons otherwise."""
    if x.dtype != np.float32:
        raise WireError(f"inputs must be float32 (normalised images), got {x.dtype}", 422)
    want = (-1, *input_shape)
    if x.ndim != len(want) or tuple(x.shape[1:]) != tuple(input_shape):
        raise WireError(f"inputs must have shape (N, {', '.join(map(str, input_shape))}), "
                        f"got {tuple(x.shape)}", 422)
    if x.shape[0] == 0:
        raise WireError("empty batch (N = 0)", 422)
    if x.shape[0] > limits.max_batch:
        raise WireError(f"batch of {x.shape[0]} exceeds the server's limit of {limits.max_batch}; "
                        "split it", 413)
    if not np.isfinite(x).all():
        bad = int(x.shape[0] - np.isfinite(x.reshape(x.shape[0], -1)).all(1).sum())
        raise WireError(f"inputs hold NaN or infinite values ({bad} of {x.shape[0]} samples)", 422)
    return x
