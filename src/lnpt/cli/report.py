"""``lnpt report SWEEP_DIR``: tables (markdown, CSV) and figures over a sweep's finished cells."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="mean ± std tables and figures of a sweep directory",
        description="Reads every finished cell (summary.json, config.json, prune_report.json) of a "
                    "sweep directory and writes report.md, report.json, results.csv, "
                    "loss_comparison.csv, wall_times.csv and the figures (PNG and SVG).")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="folder written by `lnpt sweep`")
    p.add_argument("--out", help="output folder (default: SWEEP_DIR/report)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..experiments.report import write_report

    out = Path(args.out) if args.out else Path(args.sweep_dir) / "report"
    result = write_report(args.sweep_dir, out)
    print(f"wrote {out}/report.md ({len(result['cells'])} finished cell(s), {len(result['groups'])} group(s))")
    return 0
