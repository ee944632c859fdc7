"""`hiclaw-gitops drift`: compare live state with the org chart and report (or heal) the difference."""

from __future__ import annotations

import argparse
import json
import sys

from gitops.commands._common import add_command, fail, load_settings, report
from gitops.commands.apply import CommandError, finish, options, render_plan, session
from gitops.pipeline import apply_saved, reconcile
from gitops.plan.baseline import LAST_COMMIT


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "drift", ("settings", "path", "state_dir", "color"),
        help="report (or heal) differences between live state and the org chart",
        description="Plan the org chart (the folder PATH, else --path, else .) against live observation of every "
        "configured provider, with no new commit. Report-only by default: exit 0 when live state matches, 2 "
        "when it drifted, 1 on error. With --heal, apply the plan (exit 0 when healed and verified). Agents' "
        "sleep/wake state counts as drift only when declared with gitops.hiclaw.io/enforce-state: \"true\".",
    )
    p.add_argument("path", nargs="?", default=None, metavar="PATH", help="org folder (default: --path, else .)")
    p.add_argument("--heal", action="store_true", help="apply the plan to restore the declared state")
    p.add_argument("--allow-mass-delete", action="store_true", help="with --heal: apply even if the prune guard trips")
    p.add_argument("--concurrency", type=int, metavar="N", help="with --heal: changes in flight per provider")
    p.add_argument("--timeout", type=float, metavar="SECONDS", default=300.0, help="with --heal: deadline per change")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--strict", action="store_true", help="foreign apiVersions are errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if not settings.providers:
        return fail("drift compares with live state: configure at least one provider")
    try:
        with session(args, settings, args.path, lock=args.heal) as s:
            preview = reconcile(s.org.source, settings, head=s.org.head, store=s.store, secrets=s.secrets,
                                backends=s.backends, dry_run=True, strict=args.strict)
            report(s.org.rebase(preview.diagnostics), args.color)
            if preview.plan is None or preview.error:
                return finish(args, preview)
            last = s.store.get_meta(LAST_COMMIT, "")
            if last and last != preview.head:
                print(f"hiclaw-gitops: note: the org at {s.org.where} is not the last applied ({last}); "
                      "its own changes are part of this report", file=sys.stderr)
            if not args.heal:
                if args.format == "json":
                    sys.stdout.write(json.dumps(preview.to_dict(), indent=2, sort_keys=True) + "\n")
                else:
                    sys.stdout.write(render_plan(preview.plan, args.color))
                return 2 if preview.plan.has_changes else 0
            if args.format == "text":
                sys.stdout.write(render_plan(preview.plan, args.color) + "\n")
            result = apply_saved(preview.plan, s.org.source, settings, head=preview.head, store=s.store,
                                 secrets=s.secrets, backends=s.backends, allow_mass_delete=args.allow_mass_delete,
                                 strict=args.strict, options=options(args, settings))
            return finish(args, result)
    except CommandError as exc:
        return fail(str(exc))
