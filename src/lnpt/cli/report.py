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
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", nargs="+",
                   help="folder(s) written by `lnpt sweep`; several are reported together (e.g. a grid "
                        "and a follow-up sweep that reuses its baselines)")
    p.add_argument("--out", help="output folder (default: the first SWEEP_DIR/report)")
    p.add_argument("--against", metavar="CRITERION",
                   help="also report every criterion's paired difference to this one at the same seed, "
                        "with a 95%% interval (e.g. --against random, or a variant as the report labels "
                        "it: --against 'random [round_to=8]'); writes paired.csv")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..experiments.report import write_report  # draws figures: the plots extra

    out = Path(args.out) if args.out else Path(args.sweep_dir[0]) / "report"
    result = write_report(args.sweep_dir, out, against=args.against)
    print(f"wrote {out}/report.md ({len(result['cells'])} finished cell(s), {len(result['groups'])} group(s))")
    return 0
