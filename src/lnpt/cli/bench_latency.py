"""``lnpt bench-latency MODEL_OR_RUN_DIR``: CPU latency of the pruned student vs its dense twin.

The dense twin is the same architecture and width, unpruned (fresh weights: dense latency does
not depend on their values). Both run side by side, interleaved, with a fixed thread count, in
eager PyTorch and ONNX Runtime. An unstructured-masked student runs dense kernels, so expect no
speedup there; channel-pruned students are really smaller.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..atomic import write_text
from ..errors import ConfigError
from ..export.blocks import nchwc_block, padding_note
from ..export.latency import LatencySettings, bench_latency, latency_markdown
from ..export.onnx_export import export_onnx
from ..export.profile import profile_markdown, profile_onnx
from ..export.source import load_source


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-latency", help="CPU latency (median, p90) of dense vs pruned, eager PyTorch and ONNX Runtime",
        description="Time the student of MODEL_OR_RUN_DIR against the dense model of the same architecture. "
                    "Example: lnpt bench-latency runs/resnet20-c0.5 --threads 1 --batch-sizes 1 32")
    p.add_argument("path", metavar="MODEL_OR_RUN_DIR", help="run folder or lnpt checkpoint file")
    p.add_argument("--trust-model-code", action="store_true",
                   help="rebuild a user model by running the factory its checkpoint names (only for files you trust)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="batch sizes (default: 1 32)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes (default: 1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per model first (default: 10)")
    p.add_argument("--repeats", type=int, default=30, help="timed repeats per model (default: 30)")
    p.add_argument("--runtimes", nargs="+", choices=("torch", "onnxruntime"), default=["torch", "onnxruntime"])
    p.add_argument("--json", dest="json_out", help="also write the rows as JSON here")
    p.add_argument("--profile", action="store_true",
                   help="also profile both ONNX models at the first batch size: time per operator of the graph "
                        "ONNX Runtime really runs (layout reorders, channel padding), costliest nodes")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:

    if args.threads < 1 or args.repeats < 1 or args.warmup < 0 or min(args.batch_sizes) < 1:
        raise ConfigError("--threads, --repeats and --batch-sizes must be >= 1, --warmup >= 0")
    src = load_source(args.path, allow_code=args.trust_model_code)
    settings = LatencySettings(args.batch_sizes, args.threads, args.warmup, args.repeats, args.runtimes)
    rows = bench_latency({"dense": src.dense_reference(), "pruned": src.model}, src.input_shape, settings)
    print(f"{src.checkpoint.model_name} (width {src.checkpoint.width:g}) from {src.path}"
          + (", channel-pruned" if src.checkpoint.extra.get("structured") else "")
          + (f", {len(src.masks)} masked layer(s): dense kernels, no speedup expected" if src.masks else ""))
    print(latency_markdown(rows))
    note = padding_note(src.model, nchwc_block()) if "onnxruntime" in args.runtimes else None
    if note:
        print(note)
    if args.profile:
        print(_profile(src, args.batch_sizes[0], args.threads))
    if args.json_out:
        write_text(args.json_out, json.dumps([r.to_dict() for r in rows], indent=2))
    return 0


def _profile(src, batch: int, threads: int) -> str:


    with tempfile.TemporaryDirectory() as tmp:
        profiles = {name: profile_onnx(export_onnx(model, src.input_shape, Path(tmp) / f"{name}.onnx"),
                                       src.input_shape, batch, threads)
                    for name, model in (("dense", src.dense_reference()), ("pruned", src.model))}
    return f"ONNX Runtime profile, batch {batch}, {threads} thread(s) (profiler clock):\n\n" + profile_markdown(profiles)
