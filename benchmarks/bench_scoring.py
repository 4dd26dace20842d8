"""Scoring wall time of each pruning criterion on ResNet-20 / Fashion-MNIST (issue 3).

All criteria are measured side by side in one process, on the same scoring batches (same
seed, same --batches x --batch-size), each with its own default number of rounds (SynFlow:
100, the others: one-shot); the order of criteria rotates between repeats so that none
always runs first (warm caches) or last. Reported: the median of --repeats of the
``PruneReport.seconds`` each run records (drawing batches + teacher guidance + every round of
scoring and selection), and the ratio to SNIP's median. The target of issue 3 is LNPT <= 1.5x
SNIP.

``--reference`` times SynFlow instead against the computation of Synaptic-Flow's reference
code (Tanaka et al. 2020) written plainly here (:func:`reference_synflow`): same student,
same initial weights, same prunable layers, same 100-round exponential schedule, runs
interleaved with alternating order. Each side is timed around the whole call (lnpt:
``prune_at_init`` including drawing its scoring batches and attaching the masks), in wall
seconds and in the process's CPU seconds (steadier than wall time on a loaded machine). The target of
the accelerators issue (item 6) is lnpt <= 1.0x the reference. Masks are compared too: once
with the reference's own kept-count rule, once with lnpt's (``keep_count``, ties by position).

Usage:
    python benchmarks/bench_scoring.py [--teacher CKPT] [--batches 2] [--batch-size 128] [--repeats 5]
    python benchmarks/bench_scoring.py --reference [--repeats 7]

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
from torch import nn

from lnpt.config import prune_settings
from lnpt.data import load_data
from lnpt.models import create_model, feature_dim
from lnpt.pruning import CRITERIA, PruneReport, prunable_names, prune_at_init
from lnpt.pruning.selection import keep_count
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
    p.add_argument("--reference", action="store_true",
                   help="time SynFlow against Synaptic-Flow's computation written plainly (see above)")
    p.add_argument("--rounds", type=int, default=100, help="SynFlow rounds with --reference (default: 100)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_data(args.dataset, args.data_dir)
    if args.reference:
        return compare_reference(args, data)
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
            cfg = prune_settings(criterion=name, sparsity=args.sparsity, batches=args.batches,
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


def reference_synflow(model: nn.Module, names: list[str], input_shape: tuple[int, int, int],
                      density: float, rounds: int, exact_counts: bool = False) -> dict[str, torch.Tensor]:
    """Synaptic-Flow's SynFlow prune loop, written plainly (not lnpt's code path).

    Eval mode. Each round: multiply the masks into the weights in place; linearise (record the
    sign of every state_dict entry, take absolute values in place); backward of the summed output
    for an all-ones input in the model's dtype; score |grad * weight|; restore the signs; keep
    the scores above the global k-th smallest, k = int((1 - d) * n), at d = density^(r/rounds).
    ``exact_counts`` keeps lnpt's count instead (``keep_count``, ties by position, weights already
    pruned last): only to compare masks, never timed. Modifies ``model`` (its weights end masked).
    """
    model.eval()
    params = [model.get_parameter(n) for n in names]
    masks = [torch.ones_like(w) for w in params]
    x = torch.ones((1, *input_shape), dtype=params[0].dtype)
    for r in range(1, rounds + 1):
        with torch.no_grad():
            for w, m in zip(params, masks):
                w.mul_(m)
            signs = {k: torch.sign(v) for k, v in model.state_dict().items()}
            for v in model.state_dict().values():
                v.abs_()
        model.zero_grad()
        model(x).sum().backward()
        scores = [(w.grad * w).detach().abs() for w in params]
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.mul_(signs[k])
        flat = torch.cat([s.flatten() for s in scores])
        d = density ** (r / rounds)
        if exact_counts:
            flat[torch.cat([m.flatten() for m in masks]) == 0] = -float("inf")
            keep = torch.zeros(flat.numel(), dtype=torch.bool)
            keep[torch.argsort(flat, descending=True, stable=True)[:keep_count(flat.numel(), d)]] = True
            masks = [k.view_as(w).to(w.dtype) for k, w in zip(torch.split(keep, [w.numel() for w in params]), params)]
        elif int((1 - d) * flat.numel()) >= 1:
            threshold = torch.kthvalue(flat, int((1 - d) * flat.numel())).values
            masks = [(s > threshold).to(s.dtype) for s in scores]
    with torch.no_grad():
        for w, m in zip(params, masks):
            w.mul_(m)
    return dict(zip(names, masks))


def compare_reference(args: argparse.Namespace, data) -> int:
    """lnpt's SynFlow vs :func:`reference_synflow`, interleaved; medians, ratio, mask agreement."""
    view, shape, classes = data.train.unlabeled(), data.info.input_shape, data.info.num_classes
    cfg = prune_settings(criterion="synflow", sparsity=args.sparsity, rounds=args.rounds, batches=args.batches,
                         score_batch_size=args.batch_size)
    names = prunable_names(create_model(args.model, shape, classes, seed=0), cfg.prune.prune_first,
                           cfg.weights.prune_classifier)

    def run_lnpt() -> PruneReport:
        return prune_at_init(create_model(args.model, shape, classes, seed=0), cfg, view, None, seed=0)

    def run_reference(exact: bool = False) -> dict[str, torch.Tensor]:
        student = create_model(args.model, shape, classes, seed=0)
        return reference_synflow(student, names, shape, 1.0 - args.sparsity, args.rounds, exact)

    times: dict[str, list[float]] = {"lnpt": [], "reference": []}
    cpu: dict[str, list[float]] = {"lnpt": [], "reference": []}
    runs = {"lnpt": run_lnpt, "reference": run_reference}
    for r in range(args.repeats):
        for side in (("lnpt", "reference") if r % 2 == 0 else ("reference", "lnpt")):
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[side]()
            times[side].append(time.perf_counter() - start)
            cpu[side].append(time.process_time() - start_cpu)
            print(f"repeat {r + 1}/{args.repeats} {side}: {times[side][-1]:.2f} s ({cpu[side][-1]:.2f} s CPU)",
                  file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = med["lnpt"] / med["reference"]
    print(f"SynFlow, {args.rounds} rounds, {args.model} / {args.dataset} (input {'x'.join(map(str, shape))}), "
          f"sparsity {args.sparsity}, same seed-0 weights, median of {args.repeats} interleaved; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}")
    print()
    print("| code | median s | min s | max s | median CPU s |")
    print("|---|---:|---:|---:|---:|")
    for k, v in times.items():
        print(f"| {k} | {med[k]:.2f} | {min(v):.2f} | {max(v):.2f} | {med_cpu[k]:.2f} |")
    report = run_lnpt()
    mine = report.masks
    print(f"\nlnpt's collapse guard acted {len(report.collapse_events)} time(s) (the reference has none)")
    for rule, theirs in (("reference's count rule", run_reference()), ("lnpt's count rule", run_reference(True))):
        differ = sum(int((mine[n] != theirs[n]).sum()) for n in names)
        print(f"\nmasks vs reference with the {rule}: {differ} of {sum(m.numel() for m in mine.values())} "
              f"weights differ (kept: lnpt {sum(int(m.sum()) for m in mine.values())}, "
              f"reference {sum(int(m.sum()) for m in theirs.values())})")
    verdict = "met" if ratio <= 1.0 else "NOT met"
    print(f"\nlnpt / reference = {ratio:.2f} (target <= 1.0: {verdict}); in CPU seconds "
          f"{med_cpu['lnpt'] / med_cpu['reference']:.2f}")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"\n(total {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    sys.exit(code)
