"""Channel-pruned latency on ONNX Runtime's AVX2 code path, measured on this AVX-512 machine.

On AVX-512 CPUs ONNX Runtime computes convolutions in 16-channel blocks (NCHWc), so the
8-channel first stage of ResNet-20 at channel ratio 0.5 is padded to 16 and the speedup stops
at about 2.45x (docs/BENCHMARKS.md, issue 7). On an AVX2 CPU the block is 8 channels. We have
no AVX2 machine, and ONNX Runtime has no switch to turn its AVX-512 kernels off, so this
benchmark makes a private copy of the installed ``onnxruntime`` package in which the CPU
dispatch of its kernel library (MLAS) skips the AVX-512 branch: one conditional jump, found by
its instruction pattern, becomes a no-op. The copy then selects the AVX2/FMA3 kernels and the
8-channel block, exactly as it does on a CPU without AVX-512; nothing else changes. It is
checked before any timing: the optimised pruned graph must lose its padding reorders, and its
outputs must match PyTorch's.

What this measures is ONNX Runtime's AVX2 code path on this CPU's cores and caches, not an AVX2
device (whose clock and memory differ): it isolates what the block size costs. The stock and
the patched runtime are timed in alternating rounds (``lnpt bench-latency``, dense and pruned
interleaved inside each round, one thread); the report gives the median speedup over rounds.

    python benchmarks/bench_ort_avx2.py runs/bench-structured/resnet20-w1-lnpt-c0.5-seed0 \\
        --rounds 5 --json runs/bench-ort-avx2.json

The byte pattern was written against onnxruntime 1.32.0 (x86-64 Linux wheel); on a build
where it is not found exactly once, the benchmark stops and says so instead of guessing.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lnpt.atomic import write_text

# ``test $0x10000, <reg>`` (CPUID.7:EBX bit 16, AVX512F), then within a few instructions
# ``test $0xe0, %al`` + ``je rel32`` (XCR0 saves the AVX-512 state): the jump into the
# AVX-512 set-up. Replacing the ``je`` by a 6-byte NOP falls through to the AVX2 settings.
_AVX512_BRANCH = re.compile(rb"\xf7[\xc0-\xc7]\x00\x00\x01\x00.{0,24}?\xa8\xe0(\x0f\x84....)", re.S)
_NOP6 = bytes.fromhex("660f1f440000")
_CHECK = r"""
import collections, json, sys, tempfile, onnx, onnxruntime as ort
from pathlib import Path
from lnpt.export.onnx_export import export_onnx, onnx_parity
from lnpt.export.source import example_batch, load_source
src = load_source(sys.argv[1])
tmp = Path(tempfile.mkdtemp())
out = {"onnxruntime": ort.__file__}
for name, model in (("dense", src.dense_reference().eval()), ("pruned", src.model.eval())):
    f = export_onnx(model, src.input_shape, tmp / f"{name}.onnx")
    diff = onnx_parity(f, model, example_batch(src.input_shape, batch=8))  # raises on a mismatch
    opts = ort.SessionOptions(); opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp / f"{name}.opt.onnx")
    ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp / f"{name}.opt.onnx")).graph.node)
    out[name] = {"reorders": ops.get("ReorderOutput", 0), "max_abs_diff": diff}
print(json.dumps(out))
"""


def installed_onnxruntime() -> Path:
    import onnxruntime

    return Path(onnxruntime.__file__).parent


def patch_avx512_off(library: Path) -> None:
    """Turn MLAS's jump into its AVX-512 set-up into a no-op, in place (a private copy)."""
    data = bytearray(library.read_bytes())
    found = list(_AVX512_BRANCH.finditer(data))
    if len(found) != 1:
        raise SystemExit(f"{library.name}: the AVX-512 dispatch branch was found {len(found)} times "
                         "(expected once); this benchmark knows the onnxruntime 1.32.0 x86-64 wheel. "
                         "Install onnxruntime==1.32.0 to run it")
    start = found[0].start(1)
    data[start:start + 6] = _NOP6
    library.write_bytes(bytes(data))


def avx2_copy(root: Path) -> Path:
    """A copy of the installed onnxruntime package that runs its AVX2 kernels; reused if there.

    Returns the folder to put first on PYTHONPATH. Built in a temporary folder and renamed,
    so an interrupted build never leaves a half-patched runtime behind."""
    import onnxruntime

    target = root / f"onnxruntime-{onnxruntime.__version__}-avx2"
    if (target / "onnxruntime").is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root))
    try:
        package = tmp / "onnxruntime"
        shutil.copytree(installed_onnxruntime(), package)
        libraries = sorted(package.glob("capi/onnxruntime_pybind11_state*.so"))
        if len(libraries) != 1:
            raise SystemExit(f"expected one onnxruntime_pybind11_state*.so in {package / 'capi'}, "
                             f"found {len(libraries)}")
        patch_avx512_off(libraries[0])
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _env(pythonpath: Path | None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def check(run: str, pythonpath: Path | None) -> dict:
    """Padding reorders in the optimised graphs and output parity with PyTorch."""
    done = subprocess.run([sys.executable, "-c", _CHECK, run], env=_env(pythonpath), check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_round(run: str, pythonpath: Path | None, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        subprocess.run([sys.executable, "-m", "lnpt", "bench-latency", run, "--threads", "1",
                        "--runtimes", "onnxruntime", "--batch-sizes", *map(str, args.batch_sizes),
                        "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--json", str(out)],
                       env=_env(pythonpath), check=True, capture_output=True, text=True)
        rows = json.loads(out.read_text())
    return {(r["model"], r["batch"]): r["median_ms"] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="channel-pruned run folders (lnpt bench-latency inputs)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating stock/AVX2 rounds per run")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--cache", type=Path, default=Path("runs/ort-isa"),
                    help="where the patched onnxruntime copy is kept")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    avx2 = avx2_copy(args.cache)
    paths = {"avx512 (stock)": None, "avx2 (patched)": avx2}
    results = []
    for run in args.runs:
        checks = {isa: check(run, p) for isa, p in paths.items()}
        if checks["avx2 (patched)"]["onnxruntime"].startswith(str(installed_onnxruntime())):
            raise SystemExit("the patched onnxruntime copy was not the one imported; check PYTHONPATH")
        times: dict[str, list[dict]] = {isa: [] for isa in paths}
        for _ in range(args.rounds):
            for isa, p in paths.items():
                times[isa].append(time_round(run, p, args))
        for isa in paths:
            for batch in args.batch_sizes:
                speedups = [t[("dense", batch)] / t[("pruned", batch)] for t in times[isa]]
                results.append({
                    "run": run, "isa": isa, "batch": batch,
                    "dense_ms": statistics.median(t[("dense", batch)] for t in times[isa]),
                    "pruned_ms": statistics.median(t[("pruned", batch)] for t in times[isa]),
                    "speedup_median": statistics.median(speedups), "speedups": speedups,
                    "reorders_dense": checks[isa]["dense"]["reorders"],
                    "reorders_pruned": checks[isa]["pruned"]["reorders"],
                    "max_abs_diff": max(checks[isa]["dense"]["max_abs_diff"], checks[isa]["pruned"]["max_abs_diff"]),
                })
    print("| run | ONNX Runtime code path | batch | dense ms | pruned ms | speedup (median of rounds) | "
          "speedup per round | reorders dense / pruned | max abs diff vs PyTorch |")
    print("|---|---|---:|---:|---:|---:|---|---|---:|")
    for r in results:
        print(f"| {Path(r['run']).name} | {r['isa']} | {r['batch']} | {r['dense_ms']:.3f} | {r['pruned_ms']:.3f} | "
              f"**{r['speedup_median']:.2f}x** | {', '.join(f'{s:.2f}' for s in r['speedups'])} | "
              f"{r['reorders_dense']} / {r['reorders_pruned']} | {r['max_abs_diff']:.1e} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.json, json.dumps({"rounds": args.rounds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
