"""`hiclaw-gitops validate`: check an org (folders, files, or a remote's commit) and report every problem at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitops.commands._common import READ_ORG, add_command, load_settings, open_org, unavailable
from gitops.commands._org import OrgSource, OrgUnavailable
from gitops.diagnostics import Diagnostic, has_errors
from gitops.reports import FORMATS, render
from gitops.settings.model import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "validate", READ_ORG,
        help="check the org chart (schema and org rules) without touching anything",
        description="Validate every Worker, Team, Human and Manager of the org: the folders given, else --path "
        "(source.path), else the current directory; with --repo/--branch, the tip of that remote branch, read "
        "from its commit (no checkout). A FILE is checked as part of the org around it (the --path folder, else "
        "the current directory) and only its own problems are shown. Paths in the output are relative to the "
        "repository root. Exit 0 when valid (warnings allowed), 1 when not.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="org folders or YAML files (default: --path, else the current directory)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), json, github (workflow annotations), sarif (code scanning), "
                        "gitlab (Code Quality report)")
    p.add_argument("--strict", action="store_true", help="treat documents with a foreign apiVersion as errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops.source.load import load
    from gitops.validate.check import settings_checks, validate

    settings = load_settings(args)
    orgs: list[tuple[OrgSource, set[str] | None]] = []
    try:
        orgs = targets(args, settings)
        shown: list[Diagnostic] = []
        elsewhere = 0
        for org, only in orgs:
            result = validate(load(org.source), strict=args.strict, escapes=org.source.escapes,
                              **settings_checks(settings))
            found = org.rebase(result.diagnostics)
            if only is None:
                shown += found
                continue
            read = {f"{org.prefix}/{f.path}" if org.prefix else f.path for f in org.source.files()}
            for path in sorted(only - read):
                print(f"hiclaw-gitops: note: {path} is not an org document here (.hiclawignore, or the settings "
                      "file)", file=sys.stderr)
            mine = [d for d in found if d.file in only]
            elsewhere += len(found) - len(mine)
            shown += mine
    except OrgUnavailable as exc:
        return unavailable(exc, args.color)
    finally:
        for org, _ in orgs:
            org.close()
    if elsewhere:
        print(f"hiclaw-gitops: note: {elsewhere} more problem(s) in other files of the org; validate its folder "
              "to see them", file=sys.stderr)
    anchor = orgs[0][0].prefix or "." if orgs else "."
    sys.stdout.write(render(shown, args.format, color=args.color, anchor=anchor))
    return 1 if has_errors(shown) else 0


def targets(args: argparse.Namespace, settings: Settings) -> list[tuple[OrgSource, set[str] | None]]:
    """The orgs to check, each with the repository paths of the files asked about (None: the whole org)."""
    remote = bool(args.repo or args.branch)
    if remote or not args.paths:
        if len(args.paths) > 1:
            raise OrgUnavailable("with --repo or --branch, give at most one org folder inside the repository")
        return [(open_org(args, settings, args.paths[0] if args.paths else None), None)]
    folders = [p for p in args.paths if Path(p).is_dir()]
    files = [p for p in args.paths if not Path(p).is_dir()]
    for f in files:
        if not Path(f).is_file():
            raise OrgUnavailable(f"{f}: no such file or folder")
    out: list[tuple[OrgSource, set[str] | None]] = []
    try:
        for folder in folders:
            out.append((open_org(args, settings, folder), None))
        grouped: dict[Path, tuple[OrgSource, set[str]]] = {}
        for f in files:
            org = next((o for o, _ in out if o.root is not None and Path(f).resolve().is_relative_to(o.root)), None)
            if org is not None:
                continue  # its whole org is shown already
            root = Path(settings.source.path or ".").resolve()
            if not Path(f).resolve().is_relative_to(root):
                raise OrgUnavailable(f"{f} is not inside the org folder {settings.source.path or '.'}: pass the "
                                     "folder its org is in with --path")
            if root not in grouped:
                grouped[root] = (open_org(args, settings, str(root)), set())
            org, wanted = grouped[root]
            wanted.add(org.repo_path(f))
        out += [(org, wanted) for org, wanted in grouped.values()]
    except BaseException:
        for org, _ in out:
            org.close()
        raise
    return out
