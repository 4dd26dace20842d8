"""Load benchmark of the teacher service (issue 5), loopback only, bounded in count and time.

Starts ``lnpt teacher serve`` in a child process on 127.0.0.1 (a separate process, as the
cloud teacher would be) and measures, with the real client (:class:`RemoteTeacher`):

1. requests/s, samples/s, p50/p99 latency at batch sizes 1, 32 and 256 (one client, closed
   loop), plus four concurrent clients at batch 32;
2. binary (safetensors, npy) vs JSON payloads: bytes on the wire and latency;
3. guidance throughput at batch 128, remote vs in-process (target: remote >= 0.8x);
4. one label-free training epoch (LNPT loss, ``teacher_cache=False``) with each teacher.

With ``--compare-batching`` it measures instead the server with dynamic batching against one
forward per request, side by side in one run: ``--clients`` concurrent clients (threads, each
its own :class:`RemoteTeacher`) send ``--client-batch`` images per request for ``--seconds``
each, to ``lnpt teacher serve --device DEVICE`` holding a ``--model`` with random weights on
Fashion-MNIST's input shape (throughput does not depend on the weights); it prints a markdown
table of images/s, p50/p99 latency and images per forward (from the server's ``/healthz``).

Usage::

    python benchmarks/bench_serve.py                       # quick LeNet-5 teacher on Fashion-MNIST
    python benchmarks/bench_serve.py --teacher CKPT        # any teacher checkpoint
    python benchmarks/bench_serve.py --json results.json   # also write the numbers
    PYTHONPATH=src python benchmarks/bench_serve.py --compare-batching --device cuda --model resnet20 --seconds 20

The teacher and the in-process comparison use the same torch thread count (``--threads``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from lnpt.checkpoint import load_checkpoint, save_checkpoint
from lnpt.config import DataConfig, ModelConfig, TrainConfig
from lnpt.data import DatasetInfo, load_data
from lnpt.errors import DatasetNotFoundError
from lnpt.models import create_model, feature_dim
from lnpt.recipes.teacher_training import train_teacher
from lnpt.serve import RemoteTeacher
from lnpt.serve.background import ServerProcess
from lnpt.teachers import LocalTeacher, Teacher, teacher_guidance
from lnpt.teachers.wire import FORMATS, encode
from lnpt.train import FitOptions, LossContext, create_loss, fit


def quick_teacher(out: Path) -> Path:
    """A LeNet-5 trained for one epoch on 5000 Fashion-MNIST images (digits if absent)."""
    for dataset, subset in (("fashion-mnist", 5000), ("digits", None)):
        try:
            load_data(dataset, train_subset=16)
        except DatasetNotFoundError:
            continue
        train_teacher(ModelConfig("lenet5", 1.0), DataConfig(dataset=dataset, train_subset=subset, batch_size=128),
                      TrainConfig(loss="supervised", epochs=1, lr=0.05), out, progress=False)
        return out / "best.pt"
    raise SystemExit("no dataset for a quick teacher; pass --teacher CKPT")


def timed(fn, requests: int, seconds: float) -> list[float]:
    """Latencies (s) of up to ``requests`` calls of ``fn`` within ``seconds`` (after 3 warm-ups)."""
    for _ in range(3):
        fn()
    out: list[float] = []
    stop = time.perf_counter() + seconds
    while len(out) < requests and time.perf_counter() < stop:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(lat: list[float], batch: int, clients: int = 1) -> dict:
    total = sum(lat) / clients
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return {"batch": batch, "clients": clients, "requests": len(lat),
            "req_per_s": round(len(lat) / total, 1), "samples_per_s": round(len(lat) * batch / total),
            "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}


def load(url: str, x: torch.Tensor, clients: int, seconds: float) -> dict:
    """``clients`` threads asking the server at ``url`` for guidance on ``x`` for ``seconds``
    (after one second of warm-up), closed loop; throughput, latency and the server's forwards."""
    teachers = [RemoteTeacher(url, retry_budget=30, timeout=60) for _ in range(clients)]
    lat: list[list[float]] = [[] for _ in teachers]

    def client(i: int, until: float, record: bool) -> None:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            teachers[i].guide(x)
            if record:
                lat[i].append(time.perf_counter() - t0)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: client(i, time.perf_counter() + 1.0, False), range(clients)))
        before = teachers[0].health()
        t0 = time.perf_counter()
        list(pool.map(lambda i: client(i, t0 + seconds, True), range(clients)))
        wall = time.perf_counter() - t0
        after = teachers[0].health()
    for t in teachers:
        t.close()
    flat = sorted(v for per in lat for v in per)
    q = statistics.quantiles(flat, n=100) if len(flat) >= 2 else [flat[0]] * 99
    forwards = after["forwards"] - before["forwards"]
    images = after["forward_images"] - before["forward_images"]
    return {"requests": len(flat), "images_per_s": round(len(flat) * len(x) / wall),
            "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "forwards": forwards, "images_per_forward": round(images / max(1, forwards), 1),
            "refused_busy": after["refused_busy"] - before["refused_busy"]}


def compare_batching(args: argparse.Namespace) -> dict:
    """The same load against the server without and with dynamic batching (one run, one table)."""
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"--compare-batching needs {' and '.join(missing)} (pip install 'lnpt[serve]', or put "
                         "their wheels on PYTHONPATH)")
    tmp = Path(tempfile.mkdtemp(prefix="lnpt-bench-batching-"))
    info = DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,))
    model = create_model(args.model, info.input_shape, info.num_classes, 1.0, seed=0)
    save_checkpoint(tmp / "teacher.pt", model, args.model, 1.0, info)
    x = torch.randn(args.client_batch, *info.input_shape)
    room = str(4 * args.clients)  # queue and upload places: the bench measures batching, not 503s
    common = ("--device", args.device, "--max-concurrency", str(args.max_concurrency), "--max-queue", room,
              "--max-uploads", room, "--max-uploads-per-client", room)
    modes = (("one forward per request", ("--dynamic-batch", "0")),
             (f"dynamic batch {args.dynamic_batch}, wait {args.wait_ms:g} ms",
              ("--dynamic-batch", str(args.dynamic_batch), "--dynamic-batch-wait-ms", str(args.wait_ms))))
    rows = []
    for name, flags in modes:
        with ServerProcess(tmp / "teacher.pt", log_path=tmp / "server.log", threads=args.threads,
                           extra_args=(*common, *flags)) as server:
            rows.append({"server": name, **load(server.url, x, args.clients, args.seconds)})
    base = rows[0]["images_per_s"]
    print(f"\n{args.model} teacher on {args.device}, {args.clients} concurrent clients x {args.client_batch} "
          f"images per request, {args.seconds:g} s each, server --max-concurrency {args.max_concurrency}\n")
    print("| server | requests | images/s | vs one per request | p50 ms | p99 ms | images/forward | 503s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['requests']} | {r['images_per_s']} | {r['images_per_s'] / max(1, base):.2f}x "
              f"| {r['p50_ms']} | {r['p99_ms']} | {r['images_per_forward']} | {r['refused_busy']} |")
    return {"model": args.model, "device": args.device, "clients": args.clients,
            "client_batch": args.client_batch, "seconds": args.seconds, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=None, help="teacher checkpoint (default: train a quick one)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of server and in-process teacher")
    ap.add_argument("--requests", type=int, default=300, help="max requests per measurement")
    ap.add_argument("--seconds", type=float, default=4.0, help="max seconds per measurement")
    ap.add_argument("--epoch-samples", type=int, default=6000, help="training samples in the epoch test")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--compare-batching", action="store_true",
                    help="measure the server with dynamic batching against one forward per request")
    ap.add_argument("--device", default="cpu", help="--compare-batching: where the server's teacher runs")
    ap.add_argument("--model", default="lenet5", help="--compare-batching: the teacher's architecture")
    ap.add_argument("--clients", type=int, default=16, help="--compare-batching: concurrent clients")
    ap.add_argument("--client-batch", type=int, default=8, help="--compare-batching: images per request")
    ap.add_argument("--dynamic-batch", type=int, default=256, help="--compare-batching: the server's --dynamic-batch")
    ap.add_argument("--wait-ms", type=float, default=2.0, help="--compare-batching: --dynamic-batch-wait-ms")
    ap.add_argument("--max-concurrency", type=int, default=2, help="--compare-batching: the server's workers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.compare_batching:
        results = compare_batching(args)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="lnpt-bench-serve-"))
    ckpt = Path(args.teacher) if args.teacher else quick_teacher(tmp / "teacher")
    local = LocalTeacher.from_checkpoint(str(ckpt))
    info = load_checkpoint(ckpt).dataset
    data = load_data(info.name, train_subset=args.epoch_samples)
    view = data.train.unlabeled()
    batch_of = {b: view.inputs(torch.arange(b) % len(view)) for b in (1, 32, 128, 256)}
    results: dict = {"teacher": str(ckpt), "dataset": info.name, "input_shape": list(info.input_shape),
                     "threads": args.threads, "torch": torch.__version__}

    with ServerProcess(ckpt, log_path=tmp / "server.log", threads=args.threads) as server:
        remote = {fmt: RemoteTeacher(server.url, wire_format=fmt, retry_budget=10) for fmt in FORMATS}
        rt = remote["safetensors"]
        # 1. latency and throughput by batch size
        results["batch_sizes"] = [summary(timed(lambda x=batch_of[b]: rt.guide(x), args.requests, args.seconds), b)
                                  for b in (1, 32, 256)]
        x32 = batch_of[32]
        clients = [RemoteTeacher(server.url, retry_budget=10) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            lats = list(pool.map(lambda c: timed(lambda: c.guide(x32), args.requests // 4, args.seconds), clients))
        results["concurrent"] = summary([v for lat in lats for v in lat], 32, clients=4)
        # 2. binary vs JSON payloads
        payload = []
        for b in (32, 256):
            x = batch_of[b]
            g = local.guide(x)
            for fmt, mt in FORMATS.items():
                t0 = time.perf_counter()
                req = encode({"inputs": x}, mt)
                t_enc = time.perf_counter() - t0
                resp = encode({"logits": g.logits, "features": g.features}, mt)
                lat = timed(lambda r=remote[fmt], x=x: r.guide(x), min(args.requests, 60), args.seconds / 2)
                payload.append({"batch": b, "format": fmt, "request_bytes": len(req), "response_bytes": len(resp),
                                "encode_request_ms": round(t_enc * 1000, 2),
                                "p50_ms": round(statistics.median(lat) * 1000, 2)})
        results["payload"] = payload
        # 3. throughput at batch 128, remote vs in-process. Calls alternate so that both see
        # the same background load (a shared machine's load drifts over seconds).
        x128 = batch_of[128]
        lat_local: list[float] = []
        lat_remote: list[float] = []
        for _ in range(3):
            local.guide(x128), rt.guide(x128)
        stop = time.perf_counter() + 2 * args.seconds
        while len(lat_local) < args.requests and time.perf_counter() < stop:
            for fn, out in ((lambda: local.guide(x128), lat_local), (lambda: rt.guide(x128), lat_remote)):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        loc, rem = summary(lat_local, 128), summary(lat_remote, 128)
        served = [json.loads(line) for line in (tmp / "server.log").read_text().splitlines()
                  if line.startswith("{") and '"batch": 128' in line]
        for key in ("ms", "read_ms", "compute_ms"):  # server side: whole request, body in, teacher forward
            rem[f"server_{key.replace('ms', '').rstrip('_') or 'total'}_p50_ms"] = round(
                statistics.median(r[key] for r in served), 2)
        results["batch128"] = {"in_process": loc, "remote": rem,
                               "ratio": round(rem["samples_per_s"] / loc["samples_per_s"], 3)}
        # 4. one label-free training epoch with each teacher, no teacher cache
        results["epoch"] = {name: epoch_seconds(data, t) for name, t in (("in_process", local), ("remote", rt))}
        results["epoch"]["ratio"] = round(results["epoch"]["in_process"] / results["epoch"]["remote"], 3)
        for c in [*clients, *remote.values()]:
            c.close()
    results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def epoch_seconds(data, teacher: Teacher) -> float:
    info = data.info
    torch.manual_seed(0)
    student = create_model("lenet5", info.input_shape, info.num_classes, 1.0, seed=0)
    cfg = TrainConfig(loss="lnpt", epochs=1)
    loss = create_loss(cfg, LossContext(feature_dim(student), teacher.info.feature_dim))
    t0 = time.perf_counter()
    guidance = teacher_guidance(teacher, data.train.unlabeled(), augment=False, cache=False)
    fit(student, loss, data.train, cfg, guidance=guidance, options=FitOptions(batch_size=128))
    return round(time.perf_counter() - t0, 2)


if __name__ == "__main__":
    main()
