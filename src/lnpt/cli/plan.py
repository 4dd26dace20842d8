"""``lnpt plan``: probe candidate sparsities briefly and recommend one from learning gaps alone."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis.plan_rule import DEFAULT_MIN_AGREEMENT, DEFAULT_TOLERANCE, RULES
from ..config import SECTIONS
from ..errors import ConfigError
from ..recipes.plan import PlanSettings, make_plan
from .options import add_section_args
from .run import config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="pick the sparsity before training: short probes, learning gap, no labels",
        description="Prune and briefly train each candidate (criterion x sparsity), measure its learning "
                    "gap and teacher agreement on held-out unlabeled images, set aside probes that have not "
                    "started to learn (--min-agreement), and recommend the sparsest candidate whose gap "
                    "stays within --tolerance of the densest learning candidate's. Run settings come from --config and "
                    "flags as in `lnpt run`. See docs/PLAN.md for how often the choice matches the one "
                    "final test accuracies make.")
    p.add_argument("--config", help="run configuration file (.toml, .yaml, .json)")
    p.add_argument("--sparsities", required=True, type=_floats, help="candidate sparsities, e.g. 0.9,0.95,0.98,0.99")
    p.add_argument("--criteria", type=_names, default=("lnpt",), help="candidate criteria, e.g. lnpt,snip (default: lnpt)")
    p.add_argument("--probe-epochs", type=int, default=1, help="epochs each probe trains (default: 1)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"how much larger than the densest candidate's gap a gap may be (default: {DEFAULT_TOLERANCE:g})")
    p.add_argument("--rule", choices=RULES, default="relative",
                   help="relative: gap <= ref x (1 + tol); additive: gap <= ref + tol (default: relative)")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help="a probe predicting the teacher's class on fewer held-out images than this many times "
                        f"chance has not started to learn and is set aside; 0: off (default: {DEFAULT_MIN_AGREEMENT:g})")
    p.add_argument("--out", required=True, help="plan folder: probes/ plus plan.json and plan.md (rerun to resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="seed of init, scoring and training order (default: 0)")
    for cls in SECTIONS.values():  # --sparsity, --criterion and --epochs are the plan's to set
        add_section_args(p, cls, skip={"sparsity", "criterion", "epochs"})
    p.set_defaults(func=_plan)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _plan(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    settings = PlanSettings(sparsities=args.sparsities, criteria=args.criteria, probe_epochs=args.probe_epochs,
                            tolerance=args.tolerance, rule=args.rule, min_agreement=args.min_agreement)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"plan folder {out} is a file; choose another --out")
    make_plan(cfg, settings, out, progress=not args.no_progress)
    print((out / "plan.md").read_text())
    print(f"plan folder: {out}")
    return 0
