"""A legitimate client's latency while stalled uploads hold connections open (issue: hostile input).

Starts ``lnpt teacher serve`` (the shipped Fashion-MNIST teacher, default limits: 2 workers,
16 queue places) in a child process on 127.0.0.1, measures a :class:`RemoteTeacher`'s latency at
batch 32 alone, then again while ``--stalled`` connections each announce a 100 kB body, send 10
bytes and then nothing (reopened at once whenever the server's body deadline closes one).
Before the body was read outside the worker places, 18 such connections made every legitimate
request a 503. Loopback only, bounded in count (``--requests``) and time (``--seconds``).

Usage::

    python benchmarks/bench_slow_clients.py                     # 32 stalled uploads
    python benchmarks/bench_slow_clients.py --stalled 48 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import torch

from lnpt.atomic import write_text
from lnpt.serve import RemoteTeacher
from lnpt.serve.background import ServerProcess, StalledUploads
from lnpt.teachers import shipped_teacher_path


def latencies(remote: RemoteTeacher, x: torch.Tensor, requests: int, seconds: float) -> list[float]:
    """Seconds per ``guide`` call, up to ``requests`` calls within ``seconds`` (after 3 warm-ups)."""
    for _ in range(3):
        remote.guide(x)
    out: list[float] = []
    stop = time.perf_counter() + seconds
    while len(out) < requests and time.perf_counter() < stop:
        t0 = time.perf_counter()
        remote.guide(x)
        out.append(time.perf_counter() - t0)
    return out


def summary(lat: list[float]) -> dict:
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else [lat[0]] * 99
    return {"requests": len(lat), "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stalled", type=int, default=32, help="stalled uploads held open (default: 32)")
    ap.add_argument("--requests", type=int, default=300, help="max requests per measurement (default: 300)")
    ap.add_argument("--seconds", type=float, default=15.0, help="max seconds per measurement (default: 15)")
    ap.add_argument("--batch", type=int, default=32, help="the legitimate client's batch size (default: 32)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server (default: 1)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    ckpt = shipped_teacher_path("fashion-mnist")
    tmp = Path(tempfile.mkdtemp(prefix="lnpt-bench-slow-"))
    results: dict = {"stalled": args.stalled, "batch": args.batch, "threads": args.threads}
    with ServerProcess(ckpt, log_path=tmp / "server.log", threads=args.threads) as server:
        with RemoteTeacher(server.url, retry_budget=0) as remote:  # no retries: a 503 would fail the run
            x = torch.randn(args.batch, *remote.info.input_shape)
            results["alone"] = summary(latencies(remote, x, args.requests, args.seconds))
            with StalledUploads(server.url, args.stalled, reopen=True):
                deadline = time.monotonic() + 10
                while httpx.get(f"{server.url}/healthz", trust_env=False).json()["uploads"] < args.stalled:
                    if time.monotonic() > deadline:
                        raise SystemExit("the stalled uploads did not all reach the server")
                    time.sleep(0.05)
                results["with_stalled"] = summary(latencies(remote, x, args.requests, args.seconds))
                results["health"] = httpx.get(f"{server.url}/healthz", trust_env=False).json()
    print(json.dumps(results, indent=2))
    if args.json:
        write_text(Path(args.json), json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
