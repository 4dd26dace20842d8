"""Where ONNX Runtime spends a call: per-operator time of the graph it actually runs.

A pruned model with 4x fewer MACs is rarely 4x faster, and the reason is only visible in the
graph ONNX Runtime runs after its optimisations, not in the exported one: convolutions are
rewritten to a blocked channel layout (NCHWc: 16 channels per block with AVX-512, 8 with AVX2),
a layer narrower than a block is computed padded to it, and ``ReorderOutput`` nodes convert
between layouts. This reads ONNX Runtime's own profiler (``SessionOptions.enable_profiling``)
so ``lnpt bench-latency --profile`` can say which operators kept their cost.
"""
from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .onnx_export import INPUT_NAME, ort_session


@dataclass(frozen=True)
class NodeTime:
    """Median time of one node of the optimised graph per call (profiler clock, microseconds)."""

    node: str
    op: str
    output_bytes: int
    us: float


def profile_onnx(onnx_file: str | Path, input_shape: Sequence[int], batch: int = 1, threads: int = 1,
                 calls: int = 200, warmup: int = 20) -> list[NodeTime]:
    """Per-node median kernel time over ``calls`` profiled calls, after ``warmup`` calls whose
    events are dropped (first calls allocate).

    Profiling adds its own overhead to every node, so the totals exceed an unprofiled call;
    compare nodes and operators with each other, and wall-clock latency with
    :func:`lnpt.export.latency.bench_latency`.
    """
    if calls < 1 or warmup < 0:
        raise ValueError("calls must be >= 1 and warmup >= 0")
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(onnx_file, threads, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(warmup + calls):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        key = (e["name"][: -len("_kernel_time")], str(args.get("op_name", "?")), int(args.get("output_size", 0)))
        durations[key].append(float(e.get("dur", 0.0)))
    return [NodeTime(n, op, size, float(np.median(d[-calls:]))) for (n, op, size), d in durations.items()]


def by_operator(nodes: Sequence[NodeTime]) -> dict[str, tuple[int, float]]:
    """``{op type: (node count, microseconds per call)}``, most expensive first."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for n in nodes:
        acc[n.op][0] += 1
        acc[n.op][1] += n.us
    return {op: (int(c), us) for op, (c, us) in sorted(acc.items(), key=lambda kv: -kv[1][1])}


def profile_markdown(profiles: Mapping[str, Sequence[NodeTime]], top: int = 8) -> str:
    """Operators side by side for every profiled model, then each model's costliest nodes."""
    ops = {name: by_operator(nodes) for name, nodes in profiles.items()}
    names = list(profiles)
    all_ops = list(dict.fromkeys(op for name in names for op in ops[name]))
    lines = ["| operator | " + " | ".join(f"{n}: nodes, us/call" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for op in all_ops:
        cells = [f"{ops[n][op][0]}, {ops[n][op][1]:.1f}" if op in ops[n] else "-" for n in names]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{sum(t.us for t in profiles[n]):.1f}" for n in names) + " |")
    for n in names:
        lines += ["", f"{n}: costliest nodes (output bytes show padded layouts: NCHWc pads channels to its block)",
                  "", "| node | operator | output bytes | us/call |", "|---|---|---:|---:|"]
        for t in sorted(profiles[n], key=lambda t: -t.us)[:top]:
            lines.append(f"| {t.node} | {t.op} | {t.output_bytes} | {t.us:.1f} |")
    return "\n".join(lines) + "\n"
