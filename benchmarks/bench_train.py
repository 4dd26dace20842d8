"""Epoch time of label-free training against supervised training on the same student.

Issue 4's targets: with the teacher cache on, label-free epochs after the first cost at most
1.15x a supervised epoch; without the cache, the overhead beyond the teacher's own forward
time is at most 10%. All variants run side by side in one process, and each reports the
median over its epochs after the first (the first fills the cache).

    python benchmarks/bench_train.py --teacher shipped --model lenet5 --epochs 4
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
from lnpt.teachers import load_teacher
from lnpt.train import LossContext, create_loss, fit


def epoch_times(data, teacher, model_name, loss_name, cache, epochs, batch_size, width):
    model = create_model(model_name, data.info.input_shape, data.info.num_classes, width, seed=0)
    cfg = TrainConfig(loss=loss_name, epochs=epochs)
    loss = create_loss(cfg, LossContext(feature_dim(model), teacher.info.feature_dim))
    result = fit(model, loss, data.train, cfg, batch_size=batch_size, teacher=teacher if loss.needs_teacher else None,
                 teacher_cache=cache, progress=False)
    return [r["epoch_seconds"] for r in result.history]


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
    rows = {}
    rows["supervised"] = epoch_times(data, teacher, args.model, "supervised", False, args.epochs, args.batch_size, args.width)
    rows["label-free, cache on"] = epoch_times(data, teacher, args.model, "lnpt", True, args.epochs, args.batch_size, args.width)
    rows["label-free, cache off"] = epoch_times(data, teacher, args.model, "lnpt", False, args.epochs, args.batch_size, args.width)
    teacher_s = statistics.median(teacher_forward_seconds(data, teacher, args.batch_size, max(1, args.epochs - 1)))
    med = {k: statistics.median(v[1:] if len(v) > 1 else v) for k, v in rows.items()}
    sup = med["supervised"]
    print(f"student {args.model} x{args.width:g}, teacher {teacher.info.model}, {len(data.train)} samples, "
          f"batch {args.batch_size}, {args.threads} threads, median of epochs 2..{args.epochs}\n")
    print("| variant | epoch seconds (median) | ratio to supervised |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {v / sup:.2f}x |")
    print(f"| teacher forward alone (one pass) | {teacher_s:.2f} | {teacher_s / sup:.2f}x |")
    overhead = (med["label-free, cache off"] - teacher_s) / sup
    print(f"\ncache on: {med['label-free, cache on'] / sup:.2f}x supervised (target <= 1.15x)")
    print(f"cache off, beyond the teacher's forward: {overhead:.2f}x supervised (target <= 1.10x)")
    print(json.dumps({"median_epoch_seconds": med, "teacher_forward_seconds": teacher_s,
                      "first_epoch_seconds": {k: v[0] for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
