"""``lnpt list``: what the registries hold (models, datasets, criteria, channel criteria, losses)."""
from __future__ import annotations

import argparse
from typing import Callable

from ..data import DATASETS
from ..models import MODELS
from ..pruning.criteria import CRITERIA
from ..pruning.structured.criteria import channel_criterion_names
from ..train import LOSSES


def _names() -> dict[str, Callable[[], list[str]]]:
    """Each listable kind and how to read its names (imports stay lazy: `lnpt list` is quick)."""
    def models() -> list[str]:
        return MODELS.names()

    def datasets() -> list[str]:
        return DATASETS.names()

    def losses() -> list[str]:
        return LOSSES.names()

    def criteria() -> list[str]:
        return CRITERIA.names()

    def channel_criteria() -> list[str]:
        return channel_criterion_names()

    return {"models": models, "datasets": datasets, "criteria": criteria,
            "channel-criteria": channel_criteria, "losses": losses}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered models, datasets, criteria, channel criteria or losses",
                       description="List a registry's entries. `criteria` score weights (unstructured "
                                   "masks); `channel-criteria` score whole channels (--structured).")
    p.add_argument("what", choices=list(_names()))
    p.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    print("\n".join(_names()[args.what]()))
    return 0
