"""Scoring wall time of each pruning criterion on ResNet-20 / Fashion-MNIST (issue 3).

All criteria are measured side by side in one process, on the same scoring batches (same
seed, same --batches x --batch-size), each with its own default number of rounds (SynFlow:
100, the others: one-shot); the order of criteria rotates between repeats so that none
always runs first (warm caches) or last. Reported: the median of --repeats of the
``PruneReport.seconds`` each run records (drawing batches + teacher guidance + every round of
scoring and selection), and the ratio to SNIP's median. The target of issue 3 is LNPT <= 1.5x
SNIP.

Usage:
    python benchmarks/bench_scoring.py [--teacher CKPT] [--batches 2] [--batch-size 128] [--repeats 5]

Without --teacher the teacher is a randomly initialised ResNet-20 LocalTeacher: fine for
timing (the cost of a teacher forward does not depend on its weights), meaningless for masks.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from lnpt.config import PruneConfig
from lnpt.data import load_data
from lnpt.models import create_model, feature_dim
from lnpt.pruning import CRITERIA, prune_at_init
from lnpt.teachers import LocalTeacher, TeacherInfo, load_teacher


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default=None, help="lnpt teacher checkpoint (default: random ResNet-20, timing only)")
    p.add_argument("--model", default="resnet20", help="student architecture (default: resnet20)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--criteria", default=",".join(CRITERIA.names()), help="comma-separated (default: all)")
    p.add_argument("--batches", type=int, default=2, help="scoring batches per criterion (default: 2)")
    p.add_argument("--batch-size", type=int, default=128, help="scoring batch size (default: 128)")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default: 1, the steadiest on a small shared machine; 0 = torch's own)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_data(args.dataset, args.data_dir)
    if args.teacher:
        teacher = load_teacher(args.teacher, args.dataset)
        teacher_note = f"teacher {args.teacher}"
    else:
        tm = create_model("resnet20", data.info.input_shape, data.info.num_classes, seed=1)
        teacher = LocalTeacher(tm, TeacherInfo("resnet20", 1.0, feature_dim(tm), data.info))
        teacher_note = "randomly initialised ResNet-20 teacher (timing only)"
    names = [c.strip() for c in args.criteria.split(",") if c.strip()]
    view = data.train.unlabeled()
    times: dict[str, list[float]] = {n: [] for n in names}
    rounds: dict[str, int] = {}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            cfg = PruneConfig(criterion=name, sparsity=args.sparsity, batches=args.batches,
                              score_batch_size=args.batch_size)
            student = create_model(args.model, data.info.input_shape, data.info.num_classes, seed=0)
            report = prune_at_init(student, cfg, view, teacher, seed=0)
            times[name].append(report.seconds)
            rounds[name] = report.rounds
            print(f"repeat {r + 1}/{args.repeats} {name}: {report.seconds:.2f} s", file=sys.stderr, flush=True)

    med = {n: statistics.median(t) for n, t in times.items()}
    base = med.get("snip")
    print(f"{args.model} / {args.dataset}, {args.batches} scoring batch(es) of {args.batch_size}, "
          f"sparsity {args.sparsity}, median of {args.repeats}; {teacher_note}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}")
    print()
    print("| criterion | rounds | median s | min s | max s | x SNIP |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in names:
        ratio = f"{med[n] / base:.2f}" if base else "-"
        print(f"| {n} | {rounds[n]} | {med[n]:.2f} | {min(times[n]):.2f} | {max(times[n]):.2f} | {ratio} |")
    if base and "lnpt" in med:
        verdict = "met" if med["lnpt"] <= 1.5 * base else "NOT met"
        print(f"\nLNPT / SNIP = {med['lnpt'] / base:.2f} (target <= 1.5: {verdict})")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"\n(total {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    sys.exit(code)
