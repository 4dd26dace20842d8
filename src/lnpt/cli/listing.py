"""``lnpt list``: what the registries hold (models, datasets, criteria, losses)."""
from __future__ import annotations

import argparse


def _registries() -> dict:
    from ..data import DATASETS
    from ..models import MODELS
    from ..train import LOSSES

    regs = {"models": MODELS, "datasets": DATASETS, "losses": LOSSES}
    try:
        from ..pruning.criteria import CRITERIA
        regs["criteria"] = CRITERIA
    except ImportError:
        pass
    return regs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered models, datasets, criteria or losses")
    p.add_argument("what", choices=["models", "datasets", "criteria", "losses"])
    p.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    regs = _registries()
    if args.what not in regs:
        print(f"no {args.what} registered")
        return 1
    print("\n".join(regs[args.what].names()))
    return 0
