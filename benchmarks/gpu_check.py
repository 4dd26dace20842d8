"""The GPU check (issue "Accelerators and more than one machine", item 7): one script, a few
minutes on one GPU, printing

1. the GPU-marked tests' result (``pytest -m gpu``);
2. teacher training and label-free student training throughput (images/s) of ResNet-20 on
   Fashion-MNIST in fp32 and bf16, each next to a plain PyTorch loop on the same model, batch
   and device (lnpt's overhead as a ratio: lnpt's images/s over the plain loop's);
3. the scoring time of each criterion on that device;
4. a data-parallel ``lnpt run`` on the GPUs present (``torchrun``; NCCL);
5. the server's throughput with and without dynamic batching (``bench_serve.py --compare-batching``).

Each section runs on its own: one that fails prints its error and the next one runs.

    python benchmarks/gpu_check.py                      # on a GPU machine (Fashion-MNIST)
    python benchmarks/gpu_check.py --device cpu --tiny  # the CPU fallback: digits, tiny sizes

With ``--device cpu`` every number is a CPU number; docs/BENCHMARKS.md says which card (if any)
produced the recorded output.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from lnpt.config import TrainConfig, prune_settings
from lnpt.data import load_data
from lnpt.device import Placement, placement
from lnpt.models import create_model, feature_dim, forward_with_features
from lnpt.pruning import CRITERIA, prune_at_init
from lnpt.teachers import LocalTeacher, TeacherInfo, teacher_guidance
from lnpt.train import FitOptions, LossContext, create_loss, fit
from lnpt.train.losses import Supervised

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def gpu_tests() -> None:
    """Only the test files that hold GPU-marked tests: the others may import extras (import-linter,
    ONNX) that a GPU machine's image need not have, and they have nothing to say about the GPU."""
    _section("GPU-marked tests")
    files = sorted(str(f) for f in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in f.read_text())
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           "-o", "addopts=", *files], capture_output=True, text=True, cwd=ROOT, check=False)
    lines = done.stdout.strip().splitlines()
    failures = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    print("\n".join([*failures, lines[-1]]) if lines else done.stderr[-800:])


def _guarded(title: str, job, *args) -> None:
    """One section's failure must not cost the others: a GPU machine is lent for minutes."""
    try:
        job(*args)
    except Exception as exc:  # noqa: BLE001 - report and go on to the next section
        print(f"{title}: FAILED {type(exc).__name__}: {str(exc)[:600]}", flush=True)
        traceback.print_exc(limit=4)


def _sync(where: Placement) -> None:
    if where.device.type == "cuda":
        torch.cuda.synchronize(where.device)


def _plain_epoch(model: torch.nn.Module, data, where: Placement, batch_size: int, teacher=None) -> float:
    """Seconds of one epoch of the textbook loop: SGD, cross-entropy (on the teacher's labels
    and features when ``teacher`` is given), autocast and scaler as lnpt uses them."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = where.scaler()
    model.train()
    _sync(where)
    t0 = time.perf_counter()
    for _, x, y in data.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)):
        x, y = where.to_device(x), where.to_device(y)
        with where.autocast():
            if teacher is None:
                loss = F.cross_entropy(model(x), y)
            else:
                with torch.no_grad():
                    t_logits, t_features = forward_with_features(teacher, x)
                logits, features = forward_with_features(model, x)
                loss = F.cross_entropy(logits, t_logits.argmax(1)) + F.kl_div(
                    F.log_softmax(features, 1), F.log_softmax(t_features, 1), log_target=True, reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    _sync(where)
    return time.perf_counter() - t0


def _lnpt_epoch(model: torch.nn.Module, data, where: Placement, batch_size: int, teacher=None) -> float:
    """Seconds of lnpt's second epoch (the first warms up kernels and the teacher cache)."""
    cfg = TrainConfig(loss="supervised" if teacher is None else "lnpt", epochs=2, lr=0.05, warmup_epochs=0)
    if teacher is None:
        loss, guidance = Supervised(), None
    else:
        loss = create_loss(cfg, LossContext(feature_dim(model), feature_dim(teacher.model)))
        guidance = teacher_guidance(teacher, data.unlabeled(), augment=False, prefetch="off")
    result = fit(model, loss, data, cfg, guidance=guidance,
                 options=FitOptions(batch_size=batch_size, placement=where))
    return result.history[-1]["epoch_seconds"]


def throughput(data, where: Placement, batch_size: int, model_name: str) -> None:
    """Images/s of lnpt against the plain loop, for teacher training and label-free training."""
    shape, classes, n = data.info.input_shape, data.info.num_classes, len(data.train)
    teacher_net = where.module(create_model(model_name, shape, classes, seed=1)).eval()
    teacher = LocalTeacher(teacher_net, TeacherInfo(model_name, 1.0, feature_dim(teacher_net), data.info))
    for job, guide in (("teacher training (supervised)", None), ("label-free student training", teacher)):
        plain_model = where.module(create_model(model_name, shape, classes, seed=0))
        _plain_epoch(plain_model, data.train, where, batch_size, guide and teacher_net)  # warm-up
        plain = n / _plain_epoch(plain_model, data.train, where, batch_size, guide and teacher_net)
        ours = n / _lnpt_epoch(create_model(model_name, shape, classes, seed=0), data.train, where, batch_size, guide)
        print(f"| {job} | {where.precision} | {ours:,.0f} | {plain:,.0f} | {ours / plain:.2f} |", flush=True)


def scoring(data, where: Placement, model_name: str, batches: int, batch_size: int) -> None:
    _section(f"Scoring time per criterion ({model_name}, {batches} batch(es) of {batch_size}, fp32 scores)")
    shape, classes = data.info.input_shape, data.info.num_classes
    teacher_net = where.module(create_model(model_name, shape, classes, seed=1))
    teacher = LocalTeacher(teacher_net, TeacherInfo(model_name, 1.0, feature_dim(teacher_net), data.info))
    print("| criterion | rounds | seconds |\n|---|---:|---:|")
    for name in CRITERIA.names():
        student = where.module(create_model(model_name, shape, classes, seed=0))
        cfg = prune_settings(criterion=name, sparsity=0.9, batches=batches, score_batch_size=batch_size)
        _sync(where)
        report = prune_at_init(student, cfg, data.train.unlabeled(), teacher, seed=0)
        _sync(where)
        print(f"| {name} | {report.rounds} | {report.seconds:.2f} |", flush=True)


def data_parallel(where: Placement, dataset: str, epochs: int) -> None:
    gpus = torch.cuda.device_count() if where.device.type == "cuda" else 0
    procs = max(gpus, 1) if gpus else 2
    _section(f"Data-parallel `lnpt run`: {procs} process(es), {'NCCL' if gpus else 'gloo on the CPU'}")
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Path(tmp) / "teacher"
        subprocess.run([sys.executable, "-m", "lnpt", "teacher", "train", "--dataset", dataset, "--model", "lenet5",
                        "--epochs", "1", "--train-subset", "2000", "--out", str(teacher), "--quiet",
                        "--device", "cpu" if not gpus else "auto"], check=True, cwd=tmp, capture_output=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "lnpt", "run", "--dataset", dataset, "--model", "lenet5", "--teacher", str(teacher / "best.pt"),
               "--sparsity", "0.9", "--epochs", str(epochs), "--train-subset", "4000", "--test-subset", "1000",
               "--out", str(Path(tmp) / "run"), "--quiet", "--device", "cpu" if not gpus else "cuda"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode}): {done.stderr[-800:]}"
        final = next((ln for ln in done.stdout.splitlines() if "final test accuracy" in ln), "")
        print(f"{status}; {time.perf_counter() - t0:.1f} s wall; {final.strip()}")


def serving(device: str, model: str) -> None:
    """The teacher server's throughput with dynamic batching against without, measured by
    benchmarks/bench_serve.py (real uvicorn servers on loopback, concurrent clients)."""
    _section("Teacher server: dynamic batching against one forward per request")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_serve.py"), "--compare-batching",
                           "--device", device, "--model", model, "--seconds", "15"],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=240)
    print(done.stdout.strip() or done.stderr[-1500:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--tiny", action="store_true", help="CPU-sized: digits, LeNet-5, small batches")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-subset", type=int, default=20000, help="training images of the throughput runs")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    device = placement(args.device).device
    where_card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no GPU number measured)"
    dataset, model, batch = ("digits", "lenet5", 64) if args.tiny else ("fashion-mnist", "resnet20", args.batch_size)
    print(f"# lnpt GPU check on {where_card}; torch {torch.__version__}; {dataset}, {model}, batch {batch}")
    _guarded("GPU-marked tests", gpu_tests)
    data = load_data(dataset, train_subset=1000 if args.tiny else args.train_subset)
    _section(f"Training throughput ({len(data.train)} images): lnpt against a plain PyTorch loop "
             "(same model, batch, device)")
    print("| job | precision | lnpt img/s | plain img/s | lnpt / plain |\n|---|---|---:|---:|---:|")
    for precision in ("fp32", "bf16"):
        _guarded(f"throughput {precision}", throughput, data, placement(args.device, precision), batch, model)
    _guarded("scoring", scoring, data, placement(args.device), model, 1 if args.tiny else 2, batch)
    _guarded("data-parallel run", data_parallel, placement(args.device), dataset, 1)
    _guarded("serving", serving, str(device), model)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
