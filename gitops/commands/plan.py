"""`hiclaw-gitops plan`: what would change, as a reviewable plan (text, markdown or JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gitops.commands._common import load_settings, org_root, report
from gitops.objects import pretty_json
from gitops.source.files import DirectorySource, FileSource

if TYPE_CHECKING:
    from gitops.plan.model import Plan
    from gitops.settings.model import Settings


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "plan",
        parents=[common],
        help="show what applying the org chart would change",
        description="Compile the org chart under PATH and compare it with a baseline: --base (another commit "
        "or directory, offline), else the state store of what was applied. Exit codes with --detailed-exitcode: "
        "0 no changes, 2 changes, 1 error.",
    )
    p.add_argument("path", nargs="?", default=None, help="org directory (default: --path, else .)")
    p.add_argument("--base", metavar="REF|PATH", help="compare against a git ref of PATH's repository, or a directory")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--out", metavar="FILE", help="also save the plan as JSON, for `apply FILE`")
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes")
    p.add_argument("--strict", action="store_true", help="foreign apiVersions are errors")
    p.set_defaults(func=run)


def base_source(base: str, head_root: Path) -> tuple[FileSource, str, str]:
    """A directory, or a git ref of the repository containing the head directory (read from the commit tree)."""
    if Path(base).is_dir():
        src = DirectorySource(base)
        return src, "directory", ""
    from gitops.source.trees import ref_source

    source, commit = ref_source(head_root, base)
    return source, "commit", commit


def run(args: argparse.Namespace) -> int:
    from gitops import pipeline as engine
    from gitops.apply.state import StateStore
    from gitops.plan import baseline as baselines

    settings = load_settings(args)
    root = org_root(args, settings)
    if not root.is_dir():
        print(f"hiclaw-gitops: {root}: not a directory", file=sys.stderr)
        return 1
    head = engine.read_org(DirectorySource(root), strict=args.strict, server_name=settings.server_name)
    report(head.validation.diagnostics, args.color)
    if not head.ok:
        return 1
    offline = bool(args.base) or not settings.providers
    if args.base:
        try:
            src, kind, commit = base_source(args.base, root)
        except (LookupError, ValueError, OSError) as exc:
            print(f"hiclaw-gitops: cannot read base {args.base!r}: {exc}", file=sys.stderr)
            return 1
        base_read = engine.read_org(src, strict=args.strict, head=commit, server_name=settings.server_name)
        if not base_read.ok:
            print(f"hiclaw-gitops: note: the base {args.base} has validation errors; its valid part is compared",
                  file=sys.stderr)
        current = engine.baseline_of(base_read, settings.with_all_providers(), kind)
    elif settings.providers:
        return _plan_live(args, settings, root)
    else:
        state_dir = Path(settings.state_dir)
        current = baselines.from_state(StateStore(state_dir)) if StateStore.exists(state_dir) else baselines.empty()
    result = engine.plan(head, settings, current, all_providers=offline)
    return _emit(args, result)


def _plan_live(args: argparse.Namespace, settings: Settings, root: Path) -> int:
    """Plan against what the configured providers observe now (a dry run of apply)."""
    from gitops.apply.secrets import SecretError, SecretStore
    from gitops.apply.state import StateStore
    from gitops.pipeline import reconcile
    from gitops.providers.wiring import BackendsUnavailable, build_backends, close_backends

    try:
        backends = build_backends(settings, None)
    except BackendsUnavailable as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    store = StateStore(settings.state_dir)
    try:
        # Read only (nothing is generated): what each consumer carries is part of its hash (see with_credentials).
        secrets = SecretStore(settings.state_dir) if SecretStore.exists(settings.state_dir) else None
    except SecretError as exc:
        close_backends(backends)
        store.close()
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    try:
        outcome = reconcile(DirectorySource(root), settings, store=store, secrets=secrets, backends=backends,
                            dry_run=True, strict=args.strict)
    finally:
        close_backends(backends)
        store.close()
        if secrets is not None:
            secrets.close()
    if outcome.error or outcome.plan is None:
        print(f"hiclaw-gitops: cannot observe live state: {outcome.error}", file=sys.stderr)
        return 1
    return _emit(args, outcome.plan)


def _emit(args: argparse.Namespace, result: Plan) -> int:
    data = result.to_dict()
    if args.out:
        Path(args.out).write_text(pretty_json(data) + "\n", encoding="utf-8")
    sys.stdout.write(render(data, args.format, args.color))
    if args.detailed_exitcode and result.has_changes:
        return 2
    return 0



def render(data: dict[str, object], fmt: str, color: bool) -> str:
    if fmt == "json":
        return pretty_json(data) + "\n"  # json.dumps(indent=2, sort_keys=True), byte for byte, faster
    from gitops.views import render as render_view

    return render_view(data, fmt, color=color)
