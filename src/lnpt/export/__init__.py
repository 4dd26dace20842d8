"""Deployment artefacts: ONNX (checked in ONNX Runtime), TorchScript, safetensors (dense and
bitmask-compressed sparse) and CPU latency measurement of dense vs pruned models.

Heavy optional pieces (``onnx``, ``onnxruntime``, ``onnxscript``) are imported only by the
functions that need them, so ``import lnpt.export`` stays cheap.
"""
from __future__ import annotations

from .api import FORMATS, export_run
from .latency import LatencyRow, bench_latency
from .onnx_export import ExportError, export_onnx, onnx_parity, ort_session
from .source import ExportSource, deployable, load_source, resolve_checkpoint
from .torchscript import export_torchscript, load_torchscript
from .weights import export_safetensors, export_sparse, load_sparse, read_header

__all__ = [
    "FORMATS", "ExportError", "ExportSource", "LatencyRow", "bench_latency", "deployable", "export_onnx",
    "export_run", "export_safetensors", "export_sparse", "export_torchscript", "load_source",
    "load_sparse", "load_torchscript", "onnx_parity", "ort_session", "read_header", "resolve_checkpoint",
]
