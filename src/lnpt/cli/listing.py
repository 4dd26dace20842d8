"""``lnpt list``: what the registries hold (models, datasets, criteria, channel criteria, losses).

Criteria and losses are listed with the settings they read (one name per line first, so the
first column stays a plain list of names)."""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Callable

from ..data import DATASETS
from ..models import MODELS
from ..pruning.criteria import CRITERIA
from ..pruning.structured.criteria import channel_criterion, channel_criterion_names
from ..train import LOSSES


def _with_settings(name: str, settings: type | None) -> str:
    """``name`` and, when it declares settings, the flags it reads."""
    if settings is None:
        return name
    return f"{name:16s} reads " + ", ".join(f.name for f in fields(settings))


def _names() -> dict[str, Callable[[], list[str]]]:
    """Each listable kind and how to read its names (imports stay lazy: `lnpt list` is quick)."""
    def models() -> list[str]:
        return MODELS.names()

    def datasets() -> list[str]:
        return DATASETS.names()

    def losses() -> list[str]:
        return [_with_settings(n, LOSSES.get(n).settings) for n in LOSSES.names()]

    def criteria() -> list[str]:
        return [_with_settings(n, CRITERIA.get(n).settings) for n in CRITERIA.names()]

    def channel_criteria() -> list[str]:
        return [_with_settings(n, channel_criterion(n).settings) for n in channel_criterion_names()]

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
