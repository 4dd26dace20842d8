"""The ``lnpt`` command. Each subcommand lives in its own module with ``register(subparsers)``;
errors from the library (``LnptError``) are printed as one line, without a traceback, and so is
a missing optional extra (:mod:`lnpt.extras`)."""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import LnptError
from ..extras import missing_extra
from ..registry import UnknownNameError

# One line per subcommand module; a new command is a new module plus one entry here.
COMMANDS = ["teacher", "prune", "run", "demo", "listing", "gap", "sweep", "report", "export", "bench_latency", "plan"]


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="lnpt", description="Label-free network pruning and training (LNPT, arXiv 2403.12690).")
    parser.add_argument("--version", action="version", version=f"lnpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # a command still being written; the others keep working
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (LnptError, UnknownNameError) as exc:
        print(f"lnpt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a package of an extra reached without require()
        error = missing_extra(exc)
        if error is None:
            raise
        print(f"lnpt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
