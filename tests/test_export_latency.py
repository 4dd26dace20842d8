"""Latency measurement: rows for every model x runtime x batch, thread count honoured and
restored, speedups computed against the dense model, and `lnpt bench-latency` on a run folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lnpt.cli import main
from lnpt.export.latency import LatencyRow, bench_latency, latency_markdown, speedup

from test_export_formats import structured_run


def test_bench_latency_eager_rows_and_threads_restored() -> None:
    small = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    big = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.Linear(512, 4))
    threads = torch.get_num_threads()
    rows = bench_latency({"dense": big, "pruned": small}, (1, 8, 8), batch_sizes=(1, 4), threads=1,
                         warmup=1, repeats=5, runtimes=("torch",), min_repeat_seconds=0.001)
    assert torch.get_num_threads() == threads
    assert {(r.model, r.batch) for r in rows} == {("dense", 1), ("dense", 4), ("pruned", 1), ("pruned", 4)}
    assert all(0 < r.median_ms <= r.p90_ms and r.repeats == 5 and r.threads == 1 for r in rows)
    with pytest.raises(ValueError, match="unknown runtime"):
        bench_latency({"m": small}, (1, 8, 8), runtimes=("tvm",))


def test_speedup_and_table() -> None:
    rows = [LatencyRow("dense", "onnxruntime", 1, 1, 3.0, 3.5, 10, 1),
            LatencyRow("pruned", "onnxruntime", 1, 1, 1.0, 1.2, 10, 1)]
    assert speedup(rows, "pruned") == {("onnxruntime", 1): 3.0}
    assert "| pruned | onnxruntime | 1 | 1 | 1.000 | 1.200 | 3.00x |" in latency_markdown(rows)


@pytest.mark.slow
def test_cli_bench_latency_structured_run(digits, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = structured_run(digits, tmp_path / "r", "vgg11")
    out = tmp_path / "lat.json"
    code = main(["bench-latency", str(run), "--batch-sizes", "1", "8", "--repeats", "5", "--warmup", "2",
                 "--json", str(out)])
    assert code == 0
    assert "channel-pruned" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert {(r["model"], r["runtime"], r["batch"]) for r in rows} == {
        (m, rt, b) for m in ("dense", "pruned") for rt in ("torch", "onnxruntime") for b in (1, 8)}
