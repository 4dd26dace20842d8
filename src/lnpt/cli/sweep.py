"""``lnpt sweep CONFIG``: run every cell of a sweep file (skip finished, resume interrupted)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import SECTIONS, replace_flat
from ..device import resolve_device
from ..errors import ConfigError
from ..experiments.grid import SweepSpec, load_sweep
from ..experiments.sweep import run_sweep
from ..run_folder import RunFolder
from .options import add_run_sections, overrides
from .output import add_output_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of runs from a sweep file (resumable, parallel with --jobs)",
        description="A sweep file is a run configuration plus a [grid] table of setting = [values] "
                    "and optional [[extra]] cells (see docs/ANALYSIS.md). Each cell is a run "
                    "directory under --out; finished cells are skipped, interrupted ones resumed, "
                    "failures recorded in failures.json. Flags override the base configuration.")
    p.add_argument("config", metavar="CONFIG", help="sweep file (.toml, .yaml, .json)")
    p.add_argument("--out", help="sweep directory (default: sweeps/<CONFIG name>)")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes (default: 1)")
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
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    out = Path(args.out) if args.out else Path("sweeps") / Path(args.config).stem
    cells = spec.cells()
    resolve_device(spec.base.compute.device)  # a device the machine lacks: one line, before any cell
    if args.dry_run:
        for cell in cells:
            d = out / cell.name
            state = "finished" if RunFolder(d).finished else "resume" if d.is_dir() else "new"
            print(f"{state:9s} {cell.name}")
        print(f"{len(cells)} cell(s) in {out}")
        return 0
    result = run_sweep(spec, out, jobs=args.jobs, progress=not (args.no_progress or args.quiet),
                       log=(lambda line: None) if args.quiet else None)
    done, skipped, failed = (len(result.names(s)) for s in ("done", "skipped", "failed"))
    print(f"sweep {out}: {done} run, {skipped} already finished, {failed} failed"
          + (f" (see {out / 'failures.json'})" if failed else "") + f"; report: lnpt report {out}")
    return 1 if failed else 0
