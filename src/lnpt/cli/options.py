"""CLI flags generated from the config dataclasses (one source of truth for settings).

Flags come in one group per config section. ``--help`` shows the :data:`COMMON` flags of each
group and says how many more there are; ``--help-all`` (:func:`add_help_all`) shows them all.
"""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any, Sequence

#: The flags ``--help`` shows; every other one is listed by ``--help-all``.
COMMON: frozenset[str] = frozenset({
    "dataset", "train_subset", "test_subset", "batch_size", "unlabeled", "eval", "model", "width", "init_from",
    "model_args", "teacher",
    "criterion", "structured", "batches", "label_source", "prune_after_epochs", "sparsity", "rounds",
    "channel_ratio", "channel_scope", "score_tau", "loss", "epochs", "lr", "beta", "tau", "kd_tau",
    "device", "precision",
})

#: Group titles of the config sections, in the order help lists them.
TITLES: dict[str, str] = {
    "data": "data settings", "model": "student settings", "teacher": "teacher settings",
    "prune": "pruning settings (both modes)",
    "weights": "weight pruning (masks; read unless --structured)",
    "channels": "channel pruning (read with --structured)",
    "score": "criterion settings (each criterion reads its own; see docs/EXTENDING.md)",
    "train": "training and its schedule",
    "loss": "loss settings (each loss reads its own)",
    "compute": "device, precision and processes (how the run executes; not in its fingerprint)",
}


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
                     skip: set[str] | None = None, title: str | None = None, brief: bool = False) -> None:
    """Add one ``--flag`` per dataclass field. Defaults are left unset (``SUPPRESS``) so that a
    flag overrides a config file only when given. With ``brief``, flags outside :data:`COMMON`
    are hidden from ``--help`` until ``--help-all``."""
    group = parser.add_argument_group(title or cls.__name__.replace("Config", "").lower() + " settings")
    hints = typing.get_type_hints(cls)
    hidden = 0
    for f in fields(cls):
        if (only is not None and f.name not in only) or (skip and f.name in skip):
            continue
        if f.default is MISSING:  # nested sections
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, optional = _base_type(hints[f.name])
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if tp is bool:
            action = group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                        default=argparse.SUPPRESS, help=help_text)
        elif typing.get_origin(tp) is tuple:  # a list setting: the flag repeats
            action = group.add_argument(flag, dest=f.name, action="append", default=argparse.SUPPRESS,
                                        metavar=f.name.upper(), help=help_text + " (repeatable)")
        else:
            action = group.add_argument(flag, dest=f.name, type=_parser_for(tp, optional),
                                        choices=f.metadata.get("choices"), default=argparse.SUPPRESS,
                                        metavar=f.name.upper() if not f.metadata.get("choices") else None,
                                        help=help_text)
        if brief and f.name not in COMMON:
            action.full_help = help_text  # type: ignore[attr-defined]
            action.help = argparse.SUPPRESS
            hidden += 1
    if hidden:
        group.description = f"({hidden} more: --help-all)"
        group.brief = True  # type: ignore[attr-defined]


class _HelpAll(argparse.Action):
    """``--help-all``: every flag of every group, then exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        for action in parser._actions:
            if hasattr(action, "full_help"):
                action.help = action.full_help
        for group in parser._action_groups:
            if getattr(group, "brief", False):
                group.description = None
        parser.print_help()
        parser.exit()


def add_help_all(parser: argparse.ArgumentParser) -> None:
    """Add ``--help-all`` (``--help`` shows the common flags of each group)."""
    parser.add_argument("--help-all", action=_HelpAll, help="show every flag of every group and exit")


def add_run_sections(parser: argparse.ArgumentParser, sections: dict[str, type],
                     skip: set[str] | None = None) -> None:
    """One brief group per config section, titled by :data:`TITLES`, plus ``--help-all``."""
    for name, cls in sections.items():
        add_section_args(parser, cls, skip=skip, title=TITLES.get(name), brief=True)
    add_help_all(parser)


def overrides(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    """The flags the user actually gave, for the fields of ``classes``."""
    names = {f.name for cls in classes for f in fields(cls)} | {"seed"}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k in names}
