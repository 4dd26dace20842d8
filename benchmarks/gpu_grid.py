"""The full-budget grid on one GPU (issue "The paper's claims at budgets a reviewer would
accept", item 2), time-boxed to what a lent GPU machine gives: runs ``sweeps/gpu/full-grid.yaml``
with several cells at once on the GPU, stops the sweep at ``--budget-s`` (its workers die with
it; finished cells are complete run folders, an interrupted one resumes on the next call), and
prints one row per cell: epochs done, last and best test accuracy. The run folders' metrics and
summaries (no checkpoints) are packed into ``--pack`` so they can travel back from the machine.

    python benchmarks/gpu_grid.py --budget-s 420 --jobs 12 --pack $OUT/gpu-grid.tar.gz

``--device cpu --epochs 1 --train-subset 600`` is the CPU rehearsal of the same script.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sweep(args: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lnpt", "sweep", str(args.sweep), "--out", str(args.out),
           "--jobs", str(args.jobs), "--device", args.device, "--precision", args.precision, "--no-progress"]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.train_subset:
        cmd += ["--train-subset", str(args.train_subset), "--test-subset", str(args.train_subset)]
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)


def _stop(proc: subprocess.Popen, budget_s: float) -> str:
    try:
        proc.wait(timeout=budget_s)
        return f"sweep finished (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return f"stopped at the {budget_s:.0f} s budget"


def _rows(out: Path) -> list[str]:
    rows = ["| cell | epochs done | last test acc | best test acc | s/epoch (median) |",
            "|---|---:|---:|---:|---:|"]
    for cell in sorted(p for p in out.iterdir() if p.is_dir()):
        metrics = cell / "metrics.jsonl"
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] \
            if metrics.is_file() else []
        accs = [r["test_acc"] for r in records if r.get("test_acc") is not None]
        secs = sorted(r["epoch_seconds"] for r in records if "epoch_seconds" in r)
        median = f"{secs[len(secs) // 2]:.1f}" if secs else "-"
        last = f"{100 * accs[-1]:.2f}" if accs else "-"
        best = f"{100 * max(accs):.2f}" if accs else "-"
        done = " (finished)" if (cell / "summary.json").is_file() else ""
        rows.append(f"| {cell.name} | {len(records)}{done} | {last} | {best} | {median} |")
    return rows


def _pack(out: Path, pack: Path) -> None:
    keep = {"metrics.jsonl", "summary.json", "summary.md", "config.json", "prune_report.json"}
    pack.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(pack, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and (path.name in keep or path.parent == out):
                tar.add(path, arcname=str(path.relative_to(out.parent)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", type=Path, default=ROOT / "sweeps" / "gpu" / "full-grid.yaml")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-grid")
    p.add_argument("--budget-s", type=float, default=420.0, help="stop the sweep after this many seconds")
    p.add_argument("--jobs", type=int, default=12, help="cells at once on the device")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--epochs", type=int, default=0, help="override the sweep's epochs (rehearsal only)")
    p.add_argument("--train-subset", type=int, default=0, help="rehearsal only")
    p.add_argument("--pack", type=Path, default=None, help="tar.gz of the cells' metrics and summaries")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    outcome = _stop(_sweep(args), args.budget_s)
    print(f"\n## GPU grid: {outcome}, {time.perf_counter() - t0:.0f} s\n")
    if args.out.is_dir():
        print("\n".join(_rows(args.out)))
        if args.pack:
            _pack(args.out, args.pack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
