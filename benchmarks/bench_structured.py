"""Structured LNPT pruning on Fashion-MNIST: accuracy, size and CPU latency (issue 7).

For each student architecture: prune channels at initialisation with the LNPT channel
criterion at each --ratios value (and, at --baseline-ratio, with the magnitude and random
channel baselines), train every student label-free with the teacher (pseudo-labels + feature
term, `lnpt.recipes.pipeline.run_pipeline`), then time the dense architecture and every LNPT-pruned
student *side by side in one process* (interleaved repeats, fixed threads) in eager PyTorch and
ONNX Runtime at batch 1 and 32. Baseline students have the same shapes as the LNPT student at
the same ratio (scope "layer"), hence the same latency; they are timed only for accuracy.

Usage (the numbers in docs/BENCHMARKS.md):
    python benchmarks/bench_structured.py --teacher runs/teacher-resnet20/best.pt \
        --out runs/bench-structured --json runs/bench-structured.json

A finished run folder is reused (run_pipeline resumes it), so an interrupted benchmark restarts
where it stopped.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from lnpt.checkpoint import load_checkpoint
from lnpt.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
    prune_settings,
)
from lnpt.export.latency import LatencySettings, bench_latency, speedup
from lnpt.export.source import deployable
from lnpt.models import create_model
from lnpt.recipes.pipeline import run_pipeline


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet20:1,vgg11:0.5", help="name:width list (default: resnet20:1,vgg11:0.5)")
    p.add_argument("--ratios", type=_floats, default=[0.3, 0.5, 0.7], help="channel ratios of the LNPT students")
    p.add_argument("--baselines", default="magnitude,random", help="channel baselines at --baseline-ratio")
    p.add_argument("--baseline-ratio", type=float, default=0.5)
    p.add_argument("--round-to", type=int, default=8,
                   help="kept channel counts rounded to multiples of this (default: 8; odd counts hit slow "
                        "ONNX Runtime kernels)")
    p.add_argument("--criterion", default="lnpt", help="the LNPT channel criterion (lnpt or lnpt-fm)")
    p.add_argument("--teacher", default="shipped")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--train-subset", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--tau", type=float, default=4.0, help="LNPT loss feature temperature (default: 4)")
    p.add_argument("--score-tau", type=float, default=4.0,
                   help="LNPT score feature temperature (default: 4, the value the recorded results used)")
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--clip-grad-norm", type=float, default=None)
    p.add_argument("--train-threads", type=int, default=2, help="torch threads while training (default: 2)")
    p.add_argument("--latency-threads", type=int, default=1, help="threads of both runtimes when timing")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dense", action="store_true", help="also train the unpruned student (accuracy reference)")
    p.add_argument("--out", default="runs/bench-structured")
    p.add_argument("--json", dest="json_out", default=None)
    return p.parse_args(argv)


def config(args: argparse.Namespace, model: str, width: float, criterion: str, ratio: float) -> RunConfig:
    prune = (prune_settings(criterion=criterion, structured=True, channel_ratio=ratio, round_to=args.round_to,
                            batches=4, score_batch_size=256, score_tau=args.score_tau)
             if criterion != "dense" else prune_settings(criterion="magnitude", sparsity=0.0))
    return RunConfig(
        data=DataConfig(dataset=args.dataset, train_subset=args.train_subset, batch_size=128),
        model=ModelConfig(model=model, width=width), teacher=TeacherConfig(teacher=args.teacher),
        prune=prune.prune, weights=prune.weights, channels=prune.channels, score=prune.score,
        loss=LossConfig(tau=args.tau),
        # The recipe is spelled out rather than taken from TrainConfig's defaults, so that a change of
        # defaults neither changes these numbers silently nor breaks resuming the run folders.
        train=TrainConfig(loss="lnpt", epochs=args.epochs, lr=args.lr, eval_every=args.epochs,
                          warmup_epochs=args.warmup_epochs, clip_grad_norm=args.clip_grad_norm),
        seed=args.seed)


def markdown(results: dict, criterion: str) -> str:
    """The docs/BENCHMARKS.md table: one row per trained student, latency per shape."""
    lines = ["| model | channel criterion | ratio | test acc | params | MACs | ORT b1 ms (p90) | ORT b1 speedup "
             "| ORT b32 ms | ORT b32 speedup | eager b1 speedup | eager b32 speedup |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, res in results["models"].items():
        lat = {(r["model"], r["runtime"], r["batch"]): r for r in res["latency"]}
        for row in res["runs"]:
            shape = "dense" if row["criterion"] == "dense" else f"c{row['ratio']:g}"
            if (shape, "onnxruntime", 1) not in lat:
                shape = f"c{row['ratio']:g}"  # a baseline: same shapes as the LNPT student
            def cell(rt: str, b: int) -> str:
                r = lat.get((shape, rt, b))
                return f"{r['median_ms']:.3f} ({r['p90_ms']:.3f})" if r else "n/a"
            def sp(rt: str, b: int) -> str:
                r, d = lat.get((shape, rt, b)), lat.get(("dense", rt, b))
                return f"{d['median_ms'] / r['median_ms']:.2f}x" if r and d else "n/a"
            lines.append(f"| {key} | {row['criterion']} | {row['ratio']:g} | {100 * row['acc']:.2f} | "
                         f"{row['params']:,} | {row['macs']:,} | {cell('onnxruntime', 1)} | {sp('onnxruntime', 1)} | "
                         f"{cell('onnxruntime', 32)} | {sp('onnxruntime', 32)} | {sp('torch', 1)} | {sp('torch', 32)} |")
        d = lat.get(("dense", "onnxruntime", 1))
        if d and all(r["criterion"] != "dense" for r in res["runs"]):
            lines.append(f"| {key} | dense (not trained here) | 0 | - | {res['runs'][0]['params_dense']:,} | "
                         f"{res['runs'][0]['macs_dense']:,} | {cell_dense(lat)} | 1.00x | "
                         f"{lat[('dense', 'onnxruntime', 32)]['median_ms']:.3f} | 1.00x | 1.00x | 1.00x |")
    return "\n".join(lines) + "\n"


def cell_dense(lat: dict) -> str:
    r = lat[("dense", "onnxruntime", 1)]
    return f"{r['median_ms']:.3f} ({r['p90_ms']:.3f})"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out)
    results: dict = {"host": {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
                              "torch": torch.__version__}, "args": vars(args), "models": {}}
    t_start = time.perf_counter()
    for item in args.models.split(","):
        name, _, width_text = item.partition(":")
        width = float(width_text or 1.0)
        runs = [(args.criterion, r) for r in args.ratios] + [(b, args.baseline_ratio) for b in args.baselines.split(",") if b]
        runs += [("dense", 0.0)] if args.dense else []
        rows = []
        torch.set_num_threads(args.train_threads)
        for criterion, ratio in runs:
            folder = out / f"{name}-w{width:g}-{criterion}-c{ratio:g}-seed{args.seed}"
            summary = run_pipeline(config(args, name, width, criterion, ratio), folder, resume=folder.exists(),
                                   progress=False)
            rows.append({"criterion": criterion, "ratio": ratio, "folder": str(folder), "acc": summary["final_acc"],
                         "params": summary["params"], "params_dense": summary["params_dense"],
                         "macs": summary["macs"], "macs_dense": summary["macs_dense"],
                         "train_seconds": summary["train_seconds"]})
            print(f"{name} {criterion} c{ratio:g}: acc {summary['final_acc']:.4f}, params {summary['params']:,}, "
                  f"MACs {summary['macs']:,} ({time.perf_counter() - t_start:.0f} s so far)", flush=True)
        first = load_checkpoint(Path(rows[0]["folder"]) / "final.pt")
        shape = first.dataset.input_shape
        models = {"dense": deployable(create_model(name, shape, first.dataset.num_classes, width, seed=0))}
        for row in rows:
            if row["criterion"] == args.criterion:
                models[f"c{row['ratio']:g}"] = deployable(load_checkpoint(Path(row["folder"]) / "final.pt").build())
        lat = bench_latency(models, shape, LatencySettings((1, 32), threads=args.latency_threads, warmup=20,
                                                           repeats=args.repeats))
        results["models"][f"{name}:{width:g}"] = {
            "runs": rows, "latency": [r.to_dict() for r in lat],
            "speedup": {m: {f"{rt}@{b}": v for (rt, b), v in speedup(lat, m).items()} for m in models if m != "dense"}}
        for r in lat:
            print(f"  {r.model:6s} {r.runtime:12s} batch {r.batch:3d}: median {r.median_ms:.3f} ms, p90 {r.p90_ms:.3f} ms")
    results["seconds"] = time.perf_counter() - t_start
    print(f"total {results['seconds']:.0f} s\n")
    print(markdown(results, args.criterion))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
