"""``export_run``: one call from a run folder (or checkpoint) to deployable artefacts.

Formats: ``onnx`` (checked with ONNX Runtime against PyTorch), ``torchscript`` (traced,
checked), ``safetensors`` (dense weights; with unstructured masks also the compressed bitmask
file of :mod:`.weights`). A ``manifest.json`` beside them records sizes, parity and what the
model is, so a deployment (or a benchmark) does not have to guess.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..atomic import write_text
from ..run_folder import ExportFiles, RunFolder
from ..surgery.complexity import MAC_LABEL, count_complexity
from .onnx_export import ExportError, export_onnx, onnx_parity
from .source import ExportSource, example_batch, load_source
from .torchscript import export_torchscript
from .weights import export_safetensors, export_sparse

FORMATS = ("onnx", "torchscript", "safetensors")


def header(src: ExportSource) -> dict[str, Any]:
    c = src.checkpoint
    return {"model": c.model_name, "width": c.width, "dataset": c.dataset.to_dict(),
            "structured": c.extra.get("structured"), "source": src.path.name}


def export_run(path: str | Path, formats: Sequence[str], out: str | Path | None = None,
               allow_code: bool = False) -> dict[str, Any]:
    """Write the requested formats for the model at ``path`` into ``out`` (default ``<run>/export``)."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ExportError(f"unknown export format {unknown[0] if unknown else '(none)'!r}; known: {', '.join(FORMATS)}")
    src = load_source(path, allow_code)
    files = ExportFiles(out) if out else RunFolder(src.path.parent).export
    out = files.path
    out.mkdir(parents=True, exist_ok=True)
    cx = count_complexity(src.built, src.input_shape)
    manifest: dict[str, Any] = {**header(src), "params": cx.params, "params_nonzero": cx.params_nonzero,
                                "macs": cx.macs, "macs_nonzero": cx.macs_masked, "macs_label": MAC_LABEL,
                                "masked_weights": len(src.masks), "artefacts": {}}
    arts = manifest["artefacts"]
    if "onnx" in formats:
        file = export_onnx(src.model, src.input_shape, files.onnx)
        diff = onnx_parity(file, src.model, example_batch(src.input_shape, 8))
        arts["onnx"] = {"file": file.name, "bytes": file.stat().st_size, "max_abs_diff_vs_torch": diff}
    if "torchscript" in formats:
        file = export_torchscript(src.model, src.input_shape, files.torchscript)
        arts["torchscript"] = {"file": file.name, "bytes": file.stat().st_size}
    if "safetensors" in formats:
        state = src.model.state_dict()
        file = export_safetensors(state, files.safetensors, header(src))
        arts["safetensors"] = {"file": file.name, "bytes": file.stat().st_size}
        if src.masks:
            sparse = export_sparse(state, src.masks, files.sparse_safetensors, header(src))
            kept = sum(int(m.count_nonzero()) for m in src.masks.values())
            total = sum(m.numel() for m in src.masks.values())
            arts["safetensors_sparse"] = {
                "file": sparse.name, "bytes": sparse.stat().st_size, "encoding": "bitmask + kept values",
                "masked_weight_density": kept / total if total else 1.0,
                "compression_vs_dense": file.stat().st_size / max(sparse.stat().st_size, 1)}
    write_text(files.manifest, json.dumps(manifest, indent=2) + "\n")
    manifest["out"] = str(out)
    return manifest
