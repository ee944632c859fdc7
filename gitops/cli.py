"""Command line: `hiclaw-gitops <command>` (also `python -m gitops`).

Exit codes are the same for every command (`EXIT_CODES`): usage errors exit 1 like every other error (argparse
would exit 2, which a CI job reads as "changes present"), and no user ever sees a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from gitops import __version__, commands
from gitops.commands._common import EXIT_CODES

# Commands in the order `--help` lists them; any other module in gitops.commands follows alphabetically.
ORDER = ("validate", "plan", "show", "apply", "run", "status", "history", "drift", "graph", "secrets", "schema")


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors exiting 1 (an error like any other) instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _command_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [importlib.import_module(f"gitops.commands.{n}") for n in names]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hiclaw-gitops",
        description="GitOps reconciler for HiClaw org charts: validate, plan and apply Worker, Team, Human "
        "and Manager resources.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hiclaw-gitops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    color = getattr(args, "color", "never")
    args.color = color == "always" or (color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    from gitops.extras import MissingExtra

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except MissingExtra as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one sentence for the user, the traceback only on request
        if os.environ.get("HICLAW_GITOPS_DEBUG"):
            raise
        from gitops.settings.load import REDACTOR

        print(f"hiclaw-gitops: internal error: {type(exc).__name__}: {REDACTOR.redact(str(exc))} "
              "(set HICLAW_GITOPS_DEBUG=1 to see where; please report it)", file=sys.stderr)
        return 1
