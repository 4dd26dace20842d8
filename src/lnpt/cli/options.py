"""CLI flags generated from the config dataclasses (one source of truth for settings)."""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any


def _base_type(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner[0], True
    return tp, False


def _parser_for(tp: Any, optional: bool):
    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        return tp(text)
    parse.__name__ = tp.__name__
    return parse


def add_section_args(parser: argparse.ArgumentParser, cls: type, only: set[str] | None = None,
                     skip: set[str] | None = None, title: str | None = None) -> None:
    """Add one ``--flag`` per dataclass field. Defaults are left unset (``SUPPRESS``) so that a
    flag overrides a config file only when given."""
    group = parser.add_argument_group(title or cls.__name__.replace("Config", "").lower() + " settings")
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if (only is not None and f.name not in only) or (skip and f.name in skip):
            continue
        if f.default is MISSING:  # nested sections
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, optional = _base_type(hints[f.name])
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if tp is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=_parser_for(tp, optional),
                               choices=f.metadata.get("choices"), default=argparse.SUPPRESS,
                               metavar=f.name.upper() if not f.metadata.get("choices") else None,
                               help=help_text)


def overrides(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    """The flags the user actually gave, for the fields of ``classes``."""
    names = {f.name for cls in classes for f in fields(cls)} | {"seed"}
    return {k: v for k, v in vars(args).items() if k in names}
