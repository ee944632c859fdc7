"""Command line: `hiclaw-gitops <command>` (also `python -m gitops`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gitops import __version__
from gitops.commands import validate

COMMANDS = (validate,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiclaw-gitops",
        description="GitOps reconciler for HiClaw org charts: validate, plan and apply Worker, Team, Human and Manager resources.",
    )
    parser.add_argument("--version", action="version", version=f"hiclaw-gitops {__version__}")
    parser.add_argument("--path", dest="org_path", default=None, help="org root inside the repository")
    parser.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour output (default: auto, on a TTY)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    args.color = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
