"""Latency measurement: rows for every model x runtime x batch, thread count honoured and
restored, speedups computed against the dense model, and `lnpt bench-latency` on a run folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_export_formats import structured_run
from torch import nn

from lnpt.cli import main
from lnpt.export.blocks import nchwc_block, padding_note
from lnpt.export.latency import LatencyRow, LatencySettings, bench_latency, latency_markdown, speedup
from lnpt.export.onnx_export import export_onnx
from lnpt.export.profile import NodeTime, by_operator, profile_markdown, profile_onnx
from lnpt.export.source import load_source


def test_bench_latency_eager_rows_and_threads_restored() -> None:
    small = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    big = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.Linear(512, 4))
    threads = torch.get_num_threads()
    settings = LatencySettings(batch_sizes=(1, 4), threads=1, warmup=1, repeats=5, runtimes=("torch",),
                               min_repeat_seconds=0.001)
    rows = bench_latency({"dense": big, "pruned": small}, (1, 8, 8), settings)
    assert torch.get_num_threads() == threads
    assert {(r.model, r.batch) for r in rows} == {("dense", 1), ("dense", 4), ("pruned", 1), ("pruned", 4)}
    assert all(0 < r.median_ms <= r.p90_ms and r.repeats == 5 and r.threads == 1 for r in rows)
    with pytest.raises(ValueError, match="unknown runtime"):
        bench_latency({"m": small}, (1, 8, 8), LatencySettings(runtimes=("tvm",)))


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
                 "--json", str(out), "--profile"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "channel-pruned" in printed
    assert "ONNX Runtime profile, batch 1" in printed and "dense: nodes, us/call" in printed
    assert "pruned: costliest nodes" in printed
    # The padding note appears exactly when this CPU's channel block pads the pruned model.
    expected = padding_note(load_source(run).model, nchwc_block())
    assert (expected is not None) == ("runs ONNX Runtime's convolutions in blocks" in printed)
    rows = json.loads(out.read_text())
    assert {(r["model"], r["runtime"], r["batch"]) for r in rows} == {
        (m, rt, b) for m in ("dense", "pruned") for rt in ("torch", "onnxruntime") for b in (1, 8)}


def test_profile_onnx_times_every_node_of_the_optimised_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    path = export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    nodes = profile_onnx(path, (1, 8, 8), batch=2, calls=20, warmup=2)
    ops = by_operator(nodes)
    assert "Gemm" in ops and any("Conv" in op for op in ops)  # Conv may be fused with its ReLU
    assert all(t.us >= 0 and t.output_bytes > 0 for t in nodes)
    gemm = next(t for t in nodes if t.op == "Gemm")
    assert gemm.output_bytes == 2 * 3 * 4  # batch 2 x 3 classes, float32
    assert sum(c for c, _ in ops.values()) == len(nodes)
    with pytest.raises(ValueError, match="calls must be"):
        profile_onnx(path, (1, 8, 8), calls=0)


def test_profile_markdown_sets_models_side_by_side() -> None:
    a = [NodeTime("c1", "Conv", 100, 5.0), NodeTime("c2", "Conv", 100, 3.0), NodeTime("g", "Gemm", 8, 1.0)]
    b = [NodeTime("c1", "Conv", 100, 2.0), NodeTime("r", "ReorderOutput", 50, 0.5)]
    assert by_operator(a) == {"Conv": (2, 8.0), "Gemm": (1, 1.0)}
    md = profile_markdown({"dense": a, "pruned": b}, top=1)
    assert "| Conv | 2, 8.0 | 1, 2.0 |" in md
    assert "| ReorderOutput | - | 1, 0.5 |" in md
    assert "| total | 9.0 | 2.5 |" in md
    assert "| c1 | Conv | 100 | 5.0 |" in md and "| c2 |" not in md
