"""Command line: `hiclaw-gitops <command>` (also `python -m gitops`)."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from gitops import __version__, commands

# Commands in the order `--help` lists them; any other module in gitops.commands follows alphabetically.
ORDER = ("validate", "plan", "apply", "run", "status", "history", "drift", "graph", "secrets")


def _command_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [importlib.import_module(f"gitops.commands.{n}") for n in names]


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts; they override the settings file (SPEC §7)."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--settings", metavar="FILE", help="settings file (YAML); default: none, upstream defaults")
    g.add_argument("--repo", metavar="URL", help="org repository: URL, path or file:// (overrides source.url)")
    g.add_argument("--branch", metavar="NAME", help="branch to follow (overrides source.branch)")
    g.add_argument(
        "--path", dest="org_path", metavar="DIR", help="org root inside the repository (overrides source.path)"
    )
    g.add_argument("--state-dir", metavar="DIR", help="state directory (overrides state_dir)")
    g.add_argument("--status-branch", metavar="NAME", help="status branch (overrides status.branch)")
    g.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour (default: auto, on a TTY)"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiclaw-gitops",
        description="GitOps reconciler for HiClaw org charts: validate, plan and apply Worker, Team, Human "
        "and Manager resources.",
    )
    parser.add_argument("--version", action="version", version=f"hiclaw-gitops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_options()
    for module in _command_modules():
        module.register(sub, common)
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
