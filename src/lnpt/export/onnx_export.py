"""ONNX export (torch's ``torch.export``-based exporter) and the ONNX Runtime parity check.

The exporter behind ``torch.onnx.export(dynamo=True)`` needs ``onnxscript``; the older
TorchScript-based path is deprecated upstream, so we do not use it. The batch dimension is
dynamic: one file serves batch 1 (device latency) and larger batches. An export is only
trusted after ONNX Runtime has loaded it and reproduced PyTorch's logits within tolerance.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import LnptError
from ..extras import require

INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportError(LnptError):
    """An export failed or its result does not reproduce the PyTorch model."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision ops, deprecation notes, progress)."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, opset: int | None = None) -> Path:
    """Write ``model`` (eval mode, masks folded) as ONNX with a dynamic batch dimension."""
    for package in ("onnx", "onnxscript"):  # torch's exporter imports them as it goes
        require(package, "ONNX export")
    path = Path(path)
    x = torch.zeros((2, *input_shape))
    kwargs = {"opset_version": opset} if opset else {}
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model, (x,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
                                        external_data=False, **kwargs)
            with atomic_path(path) as tmp:
                program.save(str(tmp))
    except ImportError as exc:
        raise ExportError(f"ONNX export needs onnx and onnxscript ({exc}): pip install 'lnpt[deploy]'") from None
    except Exception as exc:  # noqa: BLE001  the exporter raises many types
        if isinstance(exc, ExportError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {first}") from None
    return path


def ort_session(path: str | Path, threads: int = 1, profile_prefix: str | None = None):
    """An ONNX Runtime CPU session with a fixed thread count (latency must not depend on load);
    with ``profile_prefix``, ONNX Runtime's profiler records every node (:mod:`.profile`)."""
    ort = require("onnxruntime", "ONNX Runtime")
    opts = ort.SessionOptions()
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_parity(path: str | Path, model: nn.Module, x: torch.Tensor, atol: float = 1e-4,
                rtol: float = 1e-3) -> float:
    """Max |ONNX Runtime - PyTorch| on ``x``; raises ExportError beyond ``atol + rtol * |ref|``."""
    session = ort_session(path)
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    if got.shape != ref.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    diff = float(np.abs(got - ref).max())
    if not np.allclose(got, ref, atol=atol, rtol=rtol):
        raise ExportError(f"ONNX Runtime output differs from PyTorch by up to {diff:.3g} "
                          f"(tolerance atol={atol}, rtol={rtol})")
    return diff
