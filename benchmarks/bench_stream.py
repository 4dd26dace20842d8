"""Throughput and memory of the streamed path (``--unlabeled PATH``) against the in-memory one.

Issue 16, item 6. Three subcommands, each measuring what a run really does:

* ``write``: the 60,000 Fashion-MNIST training images as PNGs in shards of 1,000
  (``OUT/unlabeled/shard-XXX/NNNNN.png``, no class information; the order is a fixed shuffle
  of the training file, ``load_data(val_fraction=0)``). ``benchmarks/write_fmnist_pngs.py``
  writes the 54,000 of lnpt's training split only; the memory check wants all 60,000.
* ``speed``: side by side in one process, medians of ``--repeats`` passes:
  1. **loader**: images/s delivered by the very ``DataLoader`` a ``--unlabeled`` run iterates
     (``open_unlabeled`` + ``StreamedImages.batches``: decoding in ``--workers`` processes,
     normalisation in this one), no model. Each pass builds its loader as an epoch does, so
     the workers' start is counted.
  2. **step**: images/s of ``lnpt.train.fit`` on in-memory tensors with the label-free loss
     (``lnpt``) and the shipped teacher's guidance from a filled per-sample cache: the step
     of every epoch after the first (the first also runs the teacher; its images/s is
     reported separately as ``teacher forward``).
  3. **streamed epoch**: the same ``fit`` over the PNGs, i.e. loader and step together on the
     same cores; if the loader keeps up, it costs what the in-memory epoch costs. Both epochs
     also report the share of their time the step spent waiting for its next batch (and, of
     that, for an epoch's first one, which waits for the loader's workers to start).
* ``memory``: peak memory of ``lnpt run`` (1 epoch, LeNet-5) over the PNGs against the same
  run in memory (``--dataset fashion-mnist``), each a subprocess whose process tree (the CLI
  and its loader workers) is sampled from ``/proc`` every 50 ms: the peak of the summed RSS
  (shared pages counted once per process, an upper bound) and of the summed PSS (shared pages
  split between the processes that map them: the tree's real footprint).

    python benchmarks/bench_stream.py write --out /tmp/fm60k
    python benchmarks/bench_stream.py speed --pngs /tmp/fm60k/unlabeled --images 5000 \\
        --model-images 5000 640 --repeats 3
    python benchmarks/bench_stream.py memory --pngs /tmp/fm60k/unlabeled
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from lnpt.config import TrainConfig
from lnpt.data import load_data
from lnpt.data.streamed import StreamSettings, open_unlabeled
from lnpt.models import create_model, feature_dim
from lnpt.teachers import load_teacher, teacher_guidance
from lnpt.train import FitOptions, LossContext, OnEpochEnd, create_loss, fit


def write(out: Path, data_dir: str | None) -> None:
    """All 60,000 training images as PNGs, in the fixed order of a zero validation split."""
    data = load_data("fashion-mnist", data_dir, val_fraction=0.0)
    for i, img in enumerate(data.train._images):
        folder = out / "unlabeled" / f"shard-{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(folder / f"{i:05d}.png")
    print(f"wrote {len(data.train)} PNGs under {out / 'unlabeled'}")


def loader_rates(pngs: str, info, images: int, workers: int, batch: int, repeats: int) -> list[float]:
    """Images/s of the ``--unlabeled`` loader alone (one shuffled pass per repeat)."""
    stream = open_unlabeled([pngs], info, StreamSettings(num_workers=workers)).head(images)
    rates = []
    for r in range(repeats):
        t0, seen = time.perf_counter(), 0
        for _, x in stream.batches(batch, shuffle=True, generator=torch.Generator().manual_seed(r)):
            seen += x.shape[0]
        rates.append(seen / (time.perf_counter() - t0))
    return rates


class _Waited:
    """A training set whose batches count the seconds the trainer waits for each one: for
    streamed images, the time the training step spends waiting on the loader."""

    def __init__(self, data) -> None:
        self.data, self.info, self.seconds, self.first = data, data.info, 0.0, 0.0

    def __len__(self) -> int:
        return len(self.data)

    def unlabeled(self) -> "_Waited":
        return self  # built from the set's unlabeled view already

    def batches(self, *args, **kwargs):
        it, first = iter(self.data.batches(*args, **kwargs)), True
        while True:
            t0 = time.perf_counter()
            item = next(it, None)
            self.seconds += time.perf_counter() - t0
            if first:  # an epoch's first batch also waits for the loader's workers to start
                self.first, first = self.first + time.perf_counter() - t0, False
            if item is None:
                return
            yield item


def fit_rates(model_name: str, train_set, guidance, loss_name: str, batch: int, repeats: int) -> dict:
    """Images/s of each epoch of lnpt's trainer (label-free loss, cached guidance), and the
    share of each epoch spent waiting for the next batch."""
    model = create_model(model_name, train_set.info.input_shape, train_set.info.num_classes, 1.0, seed=0)
    cfg = TrainConfig(loss=loss_name, epochs=repeats)
    loss = create_loss(cfg, LossContext(feature_dim(model), guidance.teacher_dim))
    waited, shares, firsts = _Waited(train_set.unlabeled()), [], []

    def on_epoch(record: dict) -> None:
        shares.append(waited.seconds - sum(shares))
        firsts.append(waited.first - sum(firsts))

    result = fit(model, loss, waited, cfg, guidance=guidance.source, options=FitOptions(batch_size=batch),
                 callbacks=[OnEpochEnd(on_epoch)])
    seconds = [r["epoch_seconds"] for r in result.history]
    return {"images_per_s": [len(train_set) / s for s in seconds],
            "waiting_share": [w / s for w, s in zip(shares, seconds)],
            "first_batch_waiting_share": [f / s for f, s in zip(firsts, seconds)]}


class _Guided:
    """A filled teacher cache over one image set, and how long filling it took."""

    def __init__(self, teacher, view) -> None:
        t0 = time.perf_counter()
        self.source = teacher_guidance(teacher, view, augment=False, cache=True, prefill=True, prefetch="off")
        self.teacher_rate = len(view) / (time.perf_counter() - t0)
        self.teacher_dim = teacher.info.feature_dim


def speed(args: argparse.Namespace) -> dict:
    """The loader, the step and the streamed epoch, side by side in this process. The in-memory
    set is the PNGs' own order (a zero validation split), so one teacher cache serves both."""
    torch.set_num_threads(args.threads)
    teacher = load_teacher("shipped", dataset="fashion-mnist")
    sizes = dict(zip(args.models, args.model_images or [args.images] * len(args.models)))
    most = max(sizes.values())
    data = load_data("fashion-mnist", train_subset=most, val_fraction=0.0)
    guided = _Guided(teacher, data.train.unlabeled())
    out = {"images": args.images, "model_images": sizes, "batch": args.batch, "workers": args.workers,
           "threads": args.threads, "repeats": args.repeats, "load_before": os.getloadavg(),
           "teacher_forward_images_per_s": round(guided.teacher_rate),
           "loader_images_per_s": loader_rates(args.pngs, teacher.info.dataset, args.images, args.workers,
                                               args.batch, args.repeats)}
    print(f"loader: {out['loader_images_per_s']}", file=sys.stderr, flush=True)
    stream = open_unlabeled([args.pngs], teacher.info.dataset, StreamSettings(num_workers=args.workers))
    for name, n in sizes.items():
        in_memory = data.train.subset(torch.arange(n))
        out[name] = {"in_memory": fit_rates(name, in_memory, guided, args.loss, args.batch, args.repeats)}
        print(f"{name} step: {out[name]}", file=sys.stderr, flush=True)
        out[name]["streamed"] = fit_rates(name, stream.head(n), guided, args.loss, args.batch, args.repeats)
        print(f"{name} streamed epoch: {out[name]}", file=sys.stderr, flush=True)
    out["load_after"] = os.getloadavg()
    return out


def _tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _memory_kib(pids: list[int]) -> tuple[int, int]:
    """Summed RSS and PSS (KiB) of ``pids`` from ``/proc/PID/smaps_rollup``."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def peak_memory(cmd: list[str], period: float = 0.05) -> dict:
    """Run ``cmd``; the peaks of its process tree's summed RSS and PSS, its process count, seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_rss = peak_pss = procs = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        rss, pss = _memory_kib(pids)
        peak_rss, peak_pss, procs = max(peak_rss, rss), max(peak_pss, pss), max(procs, len(pids))
        time.sleep(period)
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-2000:]}")
    return {"cmd": " ".join(cmd), "peak_rss_mib": round(peak_rss / 1024), "peak_pss_mib": round(peak_pss / 1024),
            "max_processes": procs, "seconds": round(time.perf_counter() - t0, 1), "summary": output.strip()[-400:]}


def memory(args: argparse.Namespace) -> dict:
    """``lnpt run`` over the PNGs against the same run in memory, one after the other."""
    lnpt = [sys.executable, "-m", "lnpt", "run", "--model", "lenet5", "--epochs", "1", "--sparsity", "0.9",
            "--quiet", "--batch-size", str(args.batch)]
    out: dict = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"streamed": ["--unlabeled", args.pngs, "--loader-workers", str(args.workers)],
                "in_memory": ["--dataset", "fashion-mnist", "--test-subset", str(args.test_subset)]}
        for name, extra in runs.items():
            out[name] = peak_memory(lnpt + extra + ["--out", str(Path(tmp, name))])
    out["load_after"] = os.getloadavg()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    w = sub.add_parser("write", help="write the 60,000 training images as PNGs")
    w.add_argument("--out", required=True)
    w.add_argument("--data-dir", default=None)
    s = sub.add_parser("speed", help="loader images/s against the training step's")
    s.add_argument("--images", type=int, default=10000)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--threads", type=int, default=1, help="torch threads of this process (default: 1)")
    s.add_argument("--models", nargs="+", default=["lenet5", "resnet20"])
    s.add_argument("--model-images", type=int, nargs="+", default=None,
                   help="training images per model, in --models order (default: --images each)")
    s.add_argument("--loss", default="lnpt")
    m = sub.add_parser("memory", help="peak memory of lnpt run streamed against in memory")
    m.add_argument("--test-subset", type=int, default=2000, help="in-memory run: test images evaluated")
    for q in (s, m):
        q.add_argument("--pngs", required=True, help="folder of PNGs (the `write` subcommand's unlabeled/)")
        q.add_argument("--workers", type=int, default=2)
        q.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    if args.what == "write":
        write(Path(args.out), args.data_dir)
        return
    result = speed(args) if args.what == "speed" else memory(args)
    if args.what == "speed":
        for name in args.models:
            for run in result[name].values():
                run.update({f"median_{k}": round(statistics.median(v), 3) for k, v in list(run.items())})
        result["median_loader_images_per_s"] = round(statistics.median(result["loader_images_per_s"]))
    print(json.dumps(result, indent=1, default=lambda v: round(v, 2) if isinstance(v, float) else str(v)))


if __name__ == "__main__":
    main()
