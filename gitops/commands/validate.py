"""`hiclaw-gitops validate`: check an org directory and report every problem at once."""

from __future__ import annotations

import argparse
import sys

from gitops.commands._common import load_settings
from gitops.diagnostics import render_github, render_json, render_text
from gitops.source.files import DirectorySource
from gitops.source.load import load
from gitops.validate.check import validate


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "validate",
        parents=[common],
        help="check the org chart (schema and org rules) without touching anything",
        description="Validate every Worker, Team, Human and Manager under PATH. Exit 0 when valid, 1 when not.",
    )
    p.add_argument("path", nargs="?", default=None, help="org directory (default: --path, else the current directory)")
    p.add_argument("--format", choices=("text", "json", "github"), default="text", help="output format (default: text)")
    p.add_argument("--strict", action="store_true", help="treat documents with a foreign apiVersion as errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = args.path or args.org_path or "."
    source = DirectorySource(root)
    if not source.root.is_dir():
        print(f"hiclaw-gitops: {root}: not a directory", file=sys.stderr)
        return 1
    settings = load_settings(args)
    result = validate(load(source), strict=args.strict, escapes=source.escapes, server_name=settings.server_name)
    if args.format == "json":
        sys.stdout.write(render_json(result.diagnostics))
    elif args.format == "github":
        sys.stdout.write(render_github(result.diagnostics))
    else:
        sys.stdout.write(render_text(result.diagnostics, color=args.color))
    return 0 if result.ok else 1
