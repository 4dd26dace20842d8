"""The output flags every training command shares: where progress goes and how much of it.

On a terminal a command shows progress bars; when its output goes to a file or a pipe (a CI
log, ``make demo > log``) it writes one line per epoch instead, with the same numbers.
``--no-progress`` asks for the lines on a terminal too; ``--quiet`` prints only errors and
the final summary.
"""
from __future__ import annotations

import argparse


def add_output_flags(parser: argparse.ArgumentParser, lines: str = "one line per epoch") -> None:
    """``--no-progress`` and ``--quiet``; ``lines`` says what --no-progress still prints."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-progress", action="store_true", help=f"no progress bars ({lines} instead)")
    group.add_argument("--quiet", action="store_true", help="print only errors and the final summary")


def progress_setting(args: argparse.Namespace) -> bool | str:
    """The ``progress`` argument of the recipes for these flags (see
    :func:`lnpt.train.callbacks.progress_mode`)."""
    if args.quiet:
        return False
    return "lines" if args.no_progress else True
