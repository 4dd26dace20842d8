"""Epoch time of label-free training against supervised training on the same student.

Issue 4's targets: with the teacher cache on, label-free epochs after the first cost at most
1.15x a supervised epoch; without the cache, the overhead beyond the teacher's own forward
time is at most 10%. All variants run side by side in one process, and each reports the
median over its epochs after the first (the first fills the cache).

Without the cache the teacher runs every step. Run serially, an epoch costs the teacher's
forward plus the student's step (measured by timing the teacher inside the same epochs).
With prefetch, the teacher's forward for batch i+1 runs in a worker thread on the core the
student's step leaves idle, so the epoch costs about the larger of the two; its overhead is
measured against the teacher's forward alone (one pass over the same batches).

    python benchmarks/bench_train.py --teacher shipped --model lenet5 --epochs 4 --threads 1 \
        --train-subset 20000
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lnpt.config import TrainConfig
from lnpt.data import load_data
from lnpt.models import create_model, feature_dim
from lnpt.teachers import Teacher, load_teacher, teacher_guidance
from lnpt.train import FitOptions, LossContext, OnEpochEnd, create_loss, fit


class TimedTeacher(Teacher):
    """Counts the seconds spent inside the teacher, so its share of an epoch is measured in
    the same epoch (a separate pass would see different load on a shared machine)."""

    def __init__(self, teacher):
        self.teacher, self.info, self.seconds = teacher, teacher.info, 0.0

    def guide(self, x):
        t0 = time.perf_counter()
        out = self.teacher.guide(x)
        self.seconds += time.perf_counter() - t0
        return out


def epoch_times(data, teacher, model_name, loss_name, cache, epochs, batch_size, width, prefetch=False):
    """Per-epoch wall seconds and, per epoch, the seconds spent inside the teacher."""
    model = create_model(model_name, data.info.input_shape, data.info.num_classes, width, seed=0)
    cfg = TrainConfig(loss=loss_name, epochs=epochs)
    loss = create_loss(cfg, LossContext(feature_dim(model), teacher.info.feature_dim))
    timed = TimedTeacher(teacher)
    inside: list[float] = []

    def on_epoch(record):
        inside.append(timed.seconds - sum(inside))

    guidance = teacher_guidance(timed, data.train.unlabeled(), augment=False, cache=cache,
                                prefetch="on" if prefetch else "off")
    result = fit(model, loss, data.train, cfg, guidance=guidance, callbacks=[OnEpochEnd(on_epoch)],
                 options=FitOptions(batch_size=batch_size))
    return [r["epoch_seconds"] for r in result.history], inside


def teacher_forward_seconds(data, teacher, batch_size, repeats):
    times = []
    view = data.train.unlabeled()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _, x in view.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)):
            teacher.guide(x)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="shipped")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="lenet5")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(args.dataset, train_subset=args.train_subset)
    teacher = load_teacher(args.teacher, args.dataset)
    rows, inside = {}, {}
    variants = (("supervised", "supervised", False, False), ("label-free, cache on", "lnpt", True, False),
                ("label-free, cache off", "lnpt", False, False),
                ("label-free, cache off, prefetch", "lnpt", False, True))
    for name, loss_name, cache, prefetch in variants:
        rows[name], inside[name] = epoch_times(data, teacher, args.model, loss_name, cache, args.epochs,
                                               args.batch_size, args.width, prefetch)
    teacher_s = statistics.median(teacher_forward_seconds(data, teacher, args.batch_size, max(1, args.epochs - 1)))
    med = {k: statistics.median(v[1:] if len(v) > 1 else v) for k, v in rows.items()}
    off = rows["label-free, cache off"]
    beyond = statistics.median([e - t for e, t in zip(off, inside["label-free, cache off"])][1:] or [0.0])
    beyond_prefetch = med["label-free, cache off, prefetch"] - teacher_s
    sup = med["supervised"]
    print(f"student {args.model} x{args.width:g}, teacher {teacher.info.model}, {len(data.train)} samples, "
          f"batch {args.batch_size}, {args.threads} threads, median of epochs 2..{args.epochs}\n")
    print("| variant | epoch seconds (median) | ratio to supervised |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {v / sup:.2f}x |")
    print(f"| teacher forward alone (one pass) | {teacher_s:.2f} | {teacher_s / sup:.2f}x |")
    print(f"| cache off, serial: epoch minus time inside the teacher (same epochs) | {beyond:.2f} | "
          f"{beyond / sup:.2f}x |")
    print(f"| cache off, prefetch: epoch minus the teacher's forward alone | {beyond_prefetch:.2f} | "
          f"{beyond_prefetch / sup:.2f}x |")
    print(f"\ncache on: {med['label-free, cache on'] / sup:.2f}x supervised (target <= 1.15x)")
    print(f"cache off, overhead beyond the teacher's own forward, serial: {beyond / sup:.2f}x supervised; "
          f"with prefetch: {beyond_prefetch / sup:.2f}x (target <= 1.10x)")
    print(json.dumps({"median_epoch_seconds": med, "teacher_forward_seconds": teacher_s,
                      "cache_off_beyond_teacher_seconds": beyond,
                      "cache_off_prefetch_beyond_teacher_seconds": beyond_prefetch,
                      "first_epoch_seconds": {k: v[0] for k, v in rows.items()}}))

if __name__ == "__main__":
    main()
