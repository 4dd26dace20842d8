"""``lnpt sweep CONFIG``: run every cell of a sweep file (skip finished, resume interrupted)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import SECTIONS, replace_flat
from ..errors import ConfigError
from ..experiments.grid import SweepSpec, load_sweep
from ..experiments.execution import BACKENDS, Execution
from ..experiments.sweep import run_sweep
from ..run_folder import RunFolder
from .options import add_run_sections, overrides
from .output import add_output_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of runs from a sweep file (resumable; parallel with --jobs, --devices, --backend)",
        description="A sweep file is a run configuration plus a [grid] table of setting = [values] "
                    "and optional [[extra]] cells (see docs/ANALYSIS.md). Each cell is a run "
                    "directory under --out; finished cells are skipped, interrupted ones resumed, "
                    "failures recorded in failures.json. Flags override the base configuration. Cells run "
                    "in this process, in worker processes (--jobs N on one device, --devices LIST "
                    "--jobs-per-device K) or as Ray tasks (--backend ray).")
    p.add_argument("config", metavar="CONFIG", help="sweep file (.toml, .yaml, .json)")
    p.add_argument("--out", help="sweep directory (default: sweeps/<CONFIG name>)")
    p.add_argument("--jobs", type=int, default=None, help="cells run in parallel processes on one device (default: 1)")
    p.add_argument("--devices", metavar="LIST", help="comma-separated devices (cpu, cuda:0, cuda:1, ...): each cell "
                   "runs on one of them; --devices D equals --device D")
    p.add_argument("--jobs-per-device", type=int, metavar="K", help="with --devices: cells at once on each device "
                   "(default: 1; K x devices worker processes)")
    p.add_argument("--backend", default="local", choices=BACKENDS.names(),
                   help="local: this machine; ray: each cell a Ray task (pip install 'lnpt[ray]')")
    p.add_argument("--ray-address", metavar="ADDR", help="with --backend ray: the cluster to join (default: "
                   "RAY_ADDRESS, else a local Ray instance for this sweep)")
    p.add_argument("--cpus-per-cell", type=float, metavar="C", help="with --backend ray: CPUs each cell asks for "
                   "(and its torch threads; default: 1)")
    p.add_argument("--gpus-per-cell", type=float, metavar="G", help="with --backend ray: GPUs each cell asks for "
                   "(a fraction shares a GPU; default: 0, the cell runs on the CPU)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their state, run nothing")
    add_output_flags(p, lines="one line per finished cell")
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="base seed (when not in the grid)")
    add_run_sections(p, SECTIONS)
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:

    spec = load_sweep(args.config)
    given = overrides(args, *SECTIONS.values())
    clash = sorted(set(given) & (set(spec.grid) | {k for e in spec.extra for k in e}))
    if clash:
        raise ConfigError(f"--{clash[0].replace('_', '-')} is set per cell by the sweep file; edit the file instead")
    if given:
        spec = SweepSpec(replace_flat(spec.base, {"seed": spec.base.seed, **given}), spec.grid, spec.extra,
                         spec.given | set(given))
    out = Path(args.out) if args.out else Path("sweeps") / Path(args.config).stem
    cells = spec.cells()
    execution = _execution(args, "device" in given).checked(cells)  # before any cell, dry runs included
    if args.dry_run:
        for cell in cells:
            d = out / cell.name
            state = "finished" if RunFolder(d).finished else "resume" if d.is_dir() else "new"
            print(f"{state:9s} {cell.name}")
        print(f"{len(cells)} cell(s) in {out}")
        return 0
    result = run_sweep(spec, out, execution=execution, progress=not (args.no_progress or args.quiet),
                       log=(lambda line: None) if args.quiet else None)
    done, skipped, failed = (len(result.names(s)) for s in ("done", "skipped", "failed"))
    print(f"sweep {out}: {done} run, {skipped} already finished, {failed} failed"
          + (f" (see {out / 'failures.json'})" if failed else "") + f"; report: lnpt report {out}")
    return 1 if failed else 0


def _execution(args: argparse.Namespace, device_given: bool) -> Execution:
    """The flags that say where cells run, or a one-line error for a combination that
    contradicts itself (counts and devices are checked by :meth:`Execution.checked`)."""
    ray_flags = [f for f, v in (("--ray-address", args.ray_address), ("--cpus-per-cell", args.cpus_per_cell),
                                ("--gpus-per-cell", args.gpus_per_cell)) if v is not None]
    if args.backend == "ray":
        local = [f for f, v in (("--jobs", args.jobs), ("--devices", args.devices), ("--jobs-per-device",
                                args.jobs_per_device), ("--device", True if device_given else None)) if v is not None]
        if local:
            raise ConfigError(f"{local[0]} is for the local backend; with --backend ray each cell asks for "
                              "--cpus-per-cell/--gpus-per-cell (GPUs: it runs on cuda:0 of its own, else on "
                              "the CPU) and Ray runs as many as fit")
        return Execution("ray", ray_address=args.ray_address, cpus_per_cell=args.cpus_per_cell or 1.0,
                         gpus_per_cell=args.gpus_per_cell or 0.0)
    if ray_flags:
        raise ConfigError(f"{ray_flags[0]} needs --backend ray")
    if args.devices is None:
        if args.jobs_per_device is not None:
            raise ConfigError("--jobs-per-device needs --devices LIST (on one device use --jobs N)")
        return Execution(jobs=1 if args.jobs is None else args.jobs)
    if device_given:
        raise ConfigError("give --device or --devices, not both (--devices D equals --device D)")
    if args.jobs is not None:
        raise ConfigError("--jobs counts processes on one device; with --devices use --jobs-per-device K")
    devices = tuple(d.strip() for d in args.devices.split(","))
    if not all(devices):
        raise ConfigError(f"--devices {args.devices!r} has an empty entry; give e.g. --devices cuda:0,cuda:1")
    return Execution(devices=devices, jobs=1 if args.jobs_per_device is None else args.jobs_per_device)
