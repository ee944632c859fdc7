"""`hiclaw-gitops plan`: what would change, as a reviewable plan (text, markdown or JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gitops.commands._common import READ_ORG, add_command, fail, load_settings, org_argument, report, with_org
from gitops.commands._org import OrgSource, OrgUnavailable
from gitops.orgfiles import RESERVED_NAMES, OrgFiles
from gitops.plan.saved import dump_plan, write_plan
from gitops.source.files import DirectorySource, FileSource

if TYPE_CHECKING:
    from gitops.plan.model import Plan
    from gitops.settings.model import Settings

PLAN_FORMATS = ("text", "markdown", "json")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "plan", (*READ_ORG, "state_dir"),
        help="show what applying the org chart would change",
        description="Compile the org chart (the folder PATH, else --path, else the current directory; with "
        "--repo/--branch, the tip of that remote branch, read from its commit) and compare it with a baseline: "
        "--base (another commit or a folder, offline), else live state when a provider is configured, else the "
        "state store of what was applied. `Head:` names the commit (with +dirty for uncommitted changes in a "
        "checkout). With --detailed-exitcode: 0 no changes, 2 changes, 1 error.",
    )
    org_argument(p)
    p.add_argument("--base", metavar="REF|DIR",
                   help="compare against a git ref of the org's repository (a branch of the remote with --repo), "
                        "or a folder")
    p.add_argument("--format", choices=PLAN_FORMATS, default="text", help="text (default), markdown or json")
    p.add_argument("--out", metavar="FILE", help="also save the plan as JSON, for `apply FILE` and `show FILE`")
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes")
    p.add_argument("--strict", action="store_true", help="foreign apiVersions are errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops.gcpause import paused_gc

    settings = load_settings(args)
    # One process, one plan: the data it builds (org, desired state, baseline, the plan and its JSON) is acyclic
    # and alive to the end, so automatic collections would only walk it again and again (docs/performance.md).
    with paused_gc():
        return with_org(args, settings, lambda org: _plan(args, settings, org))


def base_source(base: str, org: OrgSource) -> tuple[FileSource, str, str]:
    """A folder, or a ref of the org's repository (read from the commit tree): source, kind, commit."""
    if not org.fetch_branch and Path(base).is_dir():
        return OrgFiles(DirectorySource(base), RESERVED_NAMES), "directory", ""
    source, commit = org.at(base)
    return source, "commit", commit


def _plan(args: argparse.Namespace, settings: Settings, org: OrgSource) -> int:
    from gitops import pipeline as engine
    from gitops.apply.state import StateStore
    from gitops.plan import baseline as baselines
    from gitops.validate.check import settings_checks

    if settings.providers and not args.base:
        return _plan_live(args, settings, org)
    head = engine.read_org(org.source, strict=args.strict, head=org.head, **settings_checks(settings))
    report(org.rebase(head.validation.diagnostics), args.color)
    if not head.ok:
        return 1
    if args.base:
        try:
            src, kind, commit = base_source(args.base, org)
        except OrgUnavailable as exc:
            return fail(f"cannot read base {args.base!r}: {exc}")
        base_read = engine.read_org(src, strict=args.strict, head=commit, **settings_checks(settings))
        if not base_read.ok:  # its errors say what the compiler cannot be given (a port twice, a name twice)
            report(base_read.validation.diagnostics, args.color)
            return fail(f"the base {args.base} is invalid (its errors are above, paths relative to the base); "
                        "fix them, or plan against another base")
        current = engine.baseline_of(base_read, settings.with_all_providers(), kind)
    else:
        state_dir = Path(settings.state_dir)
        current = baselines.from_state(StateStore(state_dir)) if StateStore.exists(state_dir) else baselines.empty()
    result = engine.plan(head, settings, current, all_providers=True)
    return _emit(args, result)


def _plan_live(args: argparse.Namespace, settings: Settings, org: OrgSource) -> int:
    """Plan against what the configured providers observe now (a dry run of apply)."""
    from gitops.apply.secrets import SecretError
    from gitops.apply.state import StateStore
    from gitops.apply.stores import open_existing_secret_store
    from gitops.extras import require_backends
    from gitops.pipeline import reconcile
    from gitops.providers.wiring import BackendsUnavailable, backend_names, build_backends, close_backends

    require_backends((p.value, n) for p, n in backend_names(settings).items())
    try:
        backends = build_backends(settings, None)
    except BackendsUnavailable as exc:
        return fail(str(exc))
    store = StateStore(settings.state_dir)
    try:
        # Read only (nothing is generated): what each consumer carries is part of its hash (see with_credentials).
        secrets = open_existing_secret_store(settings)
    except SecretError as exc:
        close_backends(backends)
        store.close()
        return fail(str(exc))
    try:
        outcome = reconcile(org.source, settings, head=org.head, store=store, secrets=secrets, backends=backends,
                            dry_run=True, strict=args.strict)
    finally:
        close_backends(backends)
        store.close()
        if secrets is not None:
            secrets.close()
    report(org.rebase(outcome.diagnostics), args.color)
    if not outcome.valid:
        return 1
    if outcome.error or outcome.plan is None:
        return fail(f"cannot observe live state: {outcome.error}")
    return _emit(args, outcome.plan)


def _emit(args: argparse.Namespace, result: Plan) -> int:
    data = result.to_dict()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            write_plan(data, out)
    if args.format == "json":
        write_plan(data, sys.stdout)
    else:
        sys.stdout.write(render(data, args.format, args.color))
    if args.detailed_exitcode and result.has_changes:
        return 2
    return 0


def render(data: dict[str, object], fmt: str, color: bool) -> str:
    if fmt == "json":
        return dump_plan(data)
    from gitops.views import render as render_view

    return render_view(data, fmt, color=color)
