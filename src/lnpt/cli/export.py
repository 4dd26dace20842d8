"""``lnpt export RUN_DIR --format onnx|torchscript|safetensors``: deployable artefacts.

Masks are folded into the weights; channel-pruned students are rebuilt at their real (smaller)
shapes. The ONNX model is loaded back in ONNX Runtime and compared with PyTorch before the
command succeeds. For an unstructured-sparse student ``safetensors`` also writes a bitmask +
values file and prints how much smaller it is.
"""
from __future__ import annotations

import argparse

from ..export.api import FORMATS, export_run
from ..run_folder import ExportFiles, RunFolder


def register(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser(
        "export", help="export a trained (or pruned) student to ONNX, TorchScript or safetensors",
        description=f"Export the student of RUN_DIR ({RunFolder.FINAL}, else {RunFolder.STUDENT_INIT}) or of a "
                    "checkpoint file. Example: lnpt export runs/resnet20-c0.5 --format onnx safetensors")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder or lnpt checkpoint file")
    p.add_argument("--format", dest="formats", nargs="+", choices=FORMATS, default=["onnx"],
                   help="one or more formats (default: onnx)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/export)")
    p.add_argument("--trust-model-code", action="store_true",
                   help="rebuild a user model by running the factory its checkpoint names (only for files you trust)")
    p.set_defaults(func=_export)


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.2f} MiB"


def _export(args: argparse.Namespace) -> int:

    m = export_run(args.run_dir, args.formats, args.out, allow_code=args.trust_model_code)
    print(f"{m['model']} (width {m['width']:g}) from {m['source']}: {m['params']:,} parameters "
          f"({m['params_nonzero']:,} nonzero), {m['macs']:,} MACs per input (lnpt.surgery.complexity)")
    for name, art in m["artefacts"].items():
        line = f"- {name}: {m['out']}/{art['file']} ({_fmt_bytes(art['bytes'])})"
        if "max_abs_diff_vs_torch" in art:
            line += f", ONNX Runtime vs PyTorch max |diff| {art['max_abs_diff_vs_torch']:.2e}"
        if "compression_vs_dense" in art:
            line += (f", density {art['masked_weight_density']:.2%} of masked weights, "
                     f"{art['compression_vs_dense']:.2f}x smaller than dense")
        print(line)
    print(f"manifest: {ExportFiles(m['out']).manifest}")
    return 0
