"""Which ResNet-20 channel plan is fastest in ONNX Runtime at batch 1, and why 0.5 gives 2.45x.

Issue 7 asks for >= 2.5x lower ONNX Runtime batch-1 latency at channel ratio 0.5. The layer-wise
plan (stage widths 16/32/64 -> 8/16/32) gives 2.45x on an AVX-512 CPU. This benchmark times
the alternatives a user could pick instead, untrained (latency does not depend on weight
values), interleaved in one process with one thread:

- plans that keep the first stage at 16 channels (one NCHWc block on AVX-512) in the residual
  stream, inside the blocks, or both, and plans that prune the later stages harder;
- the layer-wise plan under ONNX Runtime's lower graph-optimisation levels and with the
  NCHWc layout transformer disabled (each against the dense model at the same setting).

    python benchmarks/bench_resnet_layouts.py --repeats 40 --json runs/bench-resnet-layouts.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lnpt.export.latency import LatencySettings, bench_latency
from lnpt.export.onnx_export import INPUT_NAME, export_onnx
from lnpt.models import create_model
from lnpt.surgery.channels import ChannelGraph
from lnpt.surgery.complexity import count_complexity

SHAPE = (1, 28, 28)
STAGES = {16: 0, 32: 1, 64: 2}
#: (residual-stream widths, block-internal widths) per stage
PLANS = {
    "dense 16/32/64": ((16, 32, 64), (16, 32, 64)),
    "layer-wise 0.5: 8/16/32": ((8, 16, 32), (8, 16, 32)),
    "stream 16/16/32, inner 8/16/32": ((16, 16, 32), (8, 16, 32)),
    "stream 8/16/32, inner 16/16/32": ((8, 16, 32), (16, 16, 32)),
    "16/16/32": ((16, 16, 32), (16, 16, 32)),
    "16/16/16": ((16, 16, 16), (16, 16, 16)),
    "stream 8/16/32, inner 16/16/16": ((8, 16, 32), (16, 16, 16)),
    "stream 8/16/16, inner 8/16/16": ((8, 16, 16), (8, 16, 16)),
}


def resnet20_plan(stream: tuple[int, ...], inner: tuple[int, ...], seed: int = 0) -> torch.nn.Module:
    """ResNet-20 (width 1) with the given kept channels, removed through the same coupled
    channel graph as ``lnpt prune --structured`` (so shortcuts and BatchNorms stay consistent)."""
    model = create_model("resnet20", SHAPE, 10, 1.0, seed=seed)
    graph = ChannelGraph(model, SHAPE)
    plan = {}
    for group in graph.groups():
        producers = [m.module for m in group.members("producer")]
        inside = all(n.startswith("blocks") and n.endswith(".conv1") for n in producers)
        keep = (inner if inside else stream)[STAGES[group.size]]
        plan[group.root] = list(range(keep, group.size))
    graph.remove(plan)
    return model.eval()


def _graph_levels(repeats: int) -> dict[str, dict[str, float]]:
    """Median batch-1 ms of dense and layer-wise 0.5 under each optimisation setting."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    settings = {"all (default)": (level.ORT_ENABLE_ALL, []),
                "all without NchwcTransformer": (level.ORT_ENABLE_ALL, ["NchwcTransformer"]),
                "extended": (level.ORT_ENABLE_EXTENDED, []), "basic": (level.ORT_ENABLE_BASIC, [])}
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal((1, *SHAPE)).astype(np.float32)}
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("dense 16/32/64", "layer-wise 0.5: 8/16/32"):
            path = export_onnx(resnet20_plan(*PLANS[name]), SHAPE, Path(tmp) / f"{len(sessions)}.onnx")
            for setting, (lvl, disabled) in settings.items():
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
                opts.graph_optimization_level, opts.log_severity_level = lvl, 3
                sessions[(name, setting)] = ort.InferenceSession(
                    str(path), sess_options=opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(50):
            s.run(None, feed)
    for _ in range(repeats):
        for key, s in sessions.items():
            t0 = time.perf_counter()
            for _ in range(50):
                s.run(None, feed)
            times[key].append((time.perf_counter() - t0) / 50 * 1e3)
    out: dict[str, dict[str, float]] = {}
    for (name, setting), ts in times.items():
        out.setdefault(setting, {})[name] = statistics.median(ts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = {name: resnet20_plan(*plan) for name, plan in PLANS.items()}
    macs = {name: count_complexity(m, SHAPE).macs for name, m in models.items()}
    rows = bench_latency(models, SHAPE, LatencySettings(batch_sizes=(1,), threads=1, warmup=50,
                                                        repeats=args.repeats, runtimes=("onnxruntime",)))
    med = {r.model: r.median_ms for r in rows}
    dense = "dense 16/32/64"
    print("| plan (stream / block-internal widths) | MACs | fewer MACs | ORT b1 ms | speedup |")
    print("|---|---:|---:|---:|---:|")
    for name in PLANS:
        print(f"| {name} | {macs[name]:,} | {macs[dense] / macs[name]:.2f}x | {med[name]:.3f} | "
              f"{med[dense] / med[name]:.2f}x |")
    levels = _graph_levels(args.repeats)
    print("\n| ONNX Runtime graph optimisation | dense ms | layer-wise 0.5 ms | speedup |\n|---|---:|---:|---:|")
    for setting, v in levels.items():
        d, p = v[dense], v["layer-wise 0.5: 8/16/32"]
        print(f"| {setting} | {d:.3f} | {p:.3f} | {d / p:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"plans": {n: {"macs": macs[n], "ort_b1_ms": med[n]} for n in PLANS},
                                               "graph_levels": levels}, indent=2))


if __name__ == "__main__":
    main()
