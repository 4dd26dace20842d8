"""``lnpt gap RUN_DIR [RUN_DIR ...] --out DIR``: learning gap vs weight distance report."""
from __future__ import annotations

import argparse

from ..analysis.runs import load_runs
from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gap", help="correlate learning gap and weight distance with test accuracy (figures + report)",
        description="Reads run directories (metrics.jsonl per epoch) and writes gap.md, gap.json and "
                    "the weight-escape and gap-vs-accuracy figures (PNG and SVG).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `lnpt run`, or a sweep directory (all its runs)")
    p.add_argument("--out", required=True, help="output folder of the report")
    p.add_argument("--early-epoch", type=int, default=1,
                   help="epoch whose metrics are correlated with final accuracy across runs (default: 1)")
    p.set_defaults(func=_gap)


def _gap(args: argparse.Namespace) -> int:
    from ..analysis.gap_report import write_gap_report  # draws figures: the plots extra

    if args.early_epoch < 1:

        raise ConfigError(f"--early-epoch must be >= 1, got {args.early_epoch}")
    runs = load_runs(args.runs, expand_sweeps=True)
    write_gap_report(runs, args.out, early_epoch=args.early_epoch)
    print(f"wrote {args.out}/gap.md, gap.json, weight_escape.png/.svg, gap_vs_accuracy.png/.svg "
          f"({len(runs)} run(s))")
    return 0
