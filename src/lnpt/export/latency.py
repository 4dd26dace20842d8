"""CPU latency of dense vs pruned models, in eager PyTorch and in ONNX Runtime.

Fair comparison rules: the same fixed thread count for both runtimes, warm-up calls before
timing, and models timed *interleaved* (repeat r of every model before repeat r+1 of any), so
a background load or frequency change hits all of them alike. A repeat times enough calls to
last a few milliseconds (timer resolution); per-call median and 90th percentile are reported.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .onnx_export import INPUT_NAME, export_onnx, ort_session

RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyRow:
    model: str
    runtime: str
    batch: int
    threads: int
    median_ms: float
    p90_ms: float
    repeats: int
    calls_per_repeat: int

    def to_dict(self) -> dict:
        return asdict(self)


def _calls_for(fn: Callable[[], object], min_seconds: float) -> int:
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    return max(1, int(min_seconds / once))


def _runner(model: nn.Module, runtime: str, x: torch.Tensor, onnx_file: Path | None,
            threads: int) -> Callable[[], object]:
    if runtime == "torch":
        def run() -> object:
            with torch.inference_mode():
                return model(x)
        return run
    assert onnx_file is not None
    session = ort_session(onnx_file, threads)
    feed = {INPUT_NAME: x.numpy().astype(np.float32)}
    return lambda: session.run(None, feed)


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured. Each call is repeated until one timing spans at least
    ``min_repeat_seconds``, so timer resolution does not dominate sub-millisecond models; the
    models are interleaved within each repeat so load on a shared machine hits all of them."""

    batch_sizes: Sequence[int] = (1, 32)
    threads: int = 1
    warmup: int = 10
    repeats: int = 30
    runtimes: Sequence[str] = RUNTIMES
    min_repeat_seconds: float = 0.005
    workdir: str | Path | None = None


def bench_latency(models: Mapping[str, nn.Module], input_shape: Sequence[int],
                  settings: LatencySettings = LatencySettings()) -> list[LatencyRow]:
    """Median and p90 per-call latency (ms) of each model x runtime x batch size."""
    s = settings
    batch_sizes, threads, warmup, repeats, runtimes = s.batch_sizes, s.threads, s.warmup, s.repeats, s.runtimes
    min_repeat_seconds, workdir = s.min_repeat_seconds, s.workdir
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtime {unknown[0]!r}; known: {', '.join(RUNTIMES)}")
    models = {name: m.eval() for name, m in models.items()}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[LatencyRow] = []
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            onnx_files: dict[str, Path | None] = {name: None for name in models}
            if "onnxruntime" in runtimes:
                onnx_files = {name: export_onnx(m, tuple(input_shape), Path(tmp) / f"{i}.onnx")
                              for i, (name, m) in enumerate(models.items())}
            gen = torch.Generator().manual_seed(0)
            for runtime in runtimes:
                for batch in batch_sizes:
                    x = torch.randn((batch, *input_shape), generator=gen)
                    fns = {n: _runner(m, runtime, x, onnx_files[n], threads) for n, m in models.items()}
                    for fn in fns.values():
                        for _ in range(warmup):
                            fn()
                    calls = {n: _calls_for(fn, min_repeat_seconds) for n, fn in fns.items()}
                    times: dict[str, list[float]] = {n: [] for n in fns}
                    for _ in range(repeats):
                        for n, fn in fns.items():
                            t0 = time.perf_counter()
                            for _ in range(calls[n]):
                                fn()
                            times[n].append((time.perf_counter() - t0) / calls[n] * 1e3)
                    for n, ts in times.items():
                        p90 = float(np.percentile(ts, 90))
                        rows.append(LatencyRow(n, runtime, batch, threads, statistics.median(ts), p90,
                                               repeats, calls[n]))
    finally:
        torch.set_num_threads(previous)
    return rows


def speedup(rows: Sequence[LatencyRow], model: str, baseline: str = "dense") -> dict[tuple[str, int], float]:
    """``{(runtime, batch): baseline median / model median}``."""
    base = {(r.runtime, r.batch): r.median_ms for r in rows if r.model == baseline}
    return {(r.runtime, r.batch): base[(r.runtime, r.batch)] / r.median_ms
            for r in rows if r.model == model and (r.runtime, r.batch) in base}


def latency_markdown(rows: Sequence[LatencyRow], baseline: str = "dense") -> str:
    base = {(r.runtime, r.batch): r.median_ms for r in rows if r.model == baseline}
    lines = ["| model | runtime | batch | threads | median ms | p90 ms | speedup vs " + baseline + " |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        sp = base.get((r.runtime, r.batch))
        lines.append(f"| {r.model} | {r.runtime} | {r.batch} | {r.threads} | {r.median_ms:.3f} | {r.p90_ms:.3f} | "
                     f"{(sp / r.median_ms if sp else float('nan')):.2f}x |")
    return "\n".join(lines) + "\n"
