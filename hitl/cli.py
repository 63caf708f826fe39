"""The ``hitl`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .errors import HitlError

# Each module registers its own sub-command: register(subparsers) adds a parser whose
# ``func`` default takes the parsed args and returns an exit code.
_SUBCOMMAND_MODULES = (
    "hitl.demo",
    "hitl.aggregation.cli",
    "hitl.impact_cli",
    "hitl.serve.cli",
    "hitl.labelstudio",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hitl", description="ML-assisted labeling with humans in the loop.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only a missing optional module is skipped, never an import error inside it.
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hitl`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HitlError as exc:
        print(f"hitl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
