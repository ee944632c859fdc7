"""`hiclaw-gitops apply`: plan the org chart against live state and apply it, or apply a saved plan exactly."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gitops.apply.executor import ApplyOptions
from gitops.apply.result import RunResult, Status, StepResult
from gitops.apply.secrets import SecretError, SecretStore
from gitops.apply.state import StateStore
from gitops.apply.stores import open_secret_store
from gitops.commands._common import add_command, fail, load_settings, open_org, report
from gitops.commands._org import OrgSource, OrgUnavailable
from gitops.extras import require_backends
from gitops.objects import Provider
from gitops.pipeline import ReconcileResult, apply_saved, reconcile
from gitops.plan.model import Plan
from gitops.plan.saved import PlanFileError, load_plan
from gitops.providers.protocol import Backend
from gitops.providers.wiring import BackendsUnavailable, backend_names, build_backends, close_backends
from gitops.settings.model import Settings

RESULT_SYMBOLS = {Status.CREATED: "+", Status.CONFIGURED: "~", Status.DELETED: "-", Status.FAILED: "!",
                  Status.SKIPPED: "·"}


NO_PROVIDER = ("no provider is configured (the settings have no runtime, matrix, storage or gateway section), so "
               "there is nothing apply could honestly apply; nothing was changed or recorded — `plan` shows the "
               "changes offline")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "apply", ("settings", "path", "state_dir", "color"),
        help="apply the org chart (or a saved plan) to the configured providers",
        description="With a folder (default: --path, else .): validate, plan against live state, show the plan, "
        "ask for approval, apply, verify by observing again and show what changed. With a plan saved by "
        "`plan --out`: refuse it if the head commit or the observed state moved, else apply exactly it. Needs at "
        "least one provider in the settings: with none, apply refuses (exit 1) and records nothing. Exit 0 when "
        "everything was applied and verified, 1 otherwise.",
    )
    p.add_argument("target", nargs="?", default=None, metavar="PATH|PLANFILE",
                   help="org folder, or a JSON plan saved with `plan --out`")
    p.add_argument("--auto-approve", action="store_true",
                   help="apply without asking (required when not attached to a terminal)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="apply even when a guard trips (many agents deleted or, with enforce-state, stopped; or an "
                   "empty org)")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="changes in flight per provider (default: each provider's `concurrency` setting)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", default=300.0,
                   help="deadline per change, retries included (default: 300)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--strict", action="store_true", help="foreign apiVersions are errors")
    p.set_defaults(func=run)


@dataclass(slots=True)
class Session:
    """What an apply needs open: settings, the org, state and secret stores, and the backends."""

    settings: Settings
    org: OrgSource
    store: StateStore
    secrets: SecretStore
    backends: dict[Provider, Backend]


class CommandError(Exception):
    """A reason to stop before anything is applied, printed as `hiclaw-gitops: <message>`."""


@contextlib.contextmanager
def session(args: argparse.Namespace, settings: Settings, folder: str | None, *,
            lock: bool = True) -> Iterator[Session]:
    """Open the stores and backends (under the state directory's lock, which a running daemon holds)."""
    if not settings.providers:
        raise CommandError(NO_PROVIDER)
    require_backends((p.value, n) for p, n in backend_names(settings).items())
    try:
        org = open_org(args, settings, folder)
    except OrgUnavailable as exc:
        raise CommandError(str(exc)) from None
    state_dir = Path(settings.state_dir)
    held = None
    if lock:
        from gitops.daemon.lock import LockHeld, StateLock

        held = StateLock(state_dir)
        try:
            held.acquire()
        except LockHeld as exc:
            raise CommandError(f"{exc}; stop it, or let it apply the commit") from None
    try:
        store = StateStore(state_dir)
        try:
            secrets = open_secret_store(settings)
        except SecretError as exc:
            store.close()
            raise CommandError(str(exc)) from None
        try:
            backends = build_backends(settings, secrets)
        except BackendsUnavailable as exc:
            store.close()
            secrets.close()
            raise CommandError(str(exc)) from None
        try:
            yield Session(settings, org, store, secrets, backends)
        finally:
            close_backends(backends)
            secrets.close()
            store.close()
    finally:
        if held is not None:
            held.release()
        org.close()


def options(args: argparse.Namespace, settings: Settings) -> ApplyOptions:
    progress = show_progress if sys.stderr.isatty() else None  # quiet in CI, a live count on a terminal
    return ApplyOptions.from_settings(settings, concurrency=args.concurrency, timeout=args.timeout,
                                      progress=progress)


def show_progress(step: StepResult, done: int, total: int) -> None:
    """One line per finished change on the terminal: `[ 3/12] created runtime/container/hiclaw-worker-x`."""
    width = len(str(total))
    note = f" ({step.message})" if step.message and step.status in (Status.FAILED, Status.SKIPPED) else ""
    sys.stderr.write(f"[{done:>{width}}/{total}] {step.status.value} {step.key}{note}\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    plan_file = Path(args.target) if args.target and Path(args.target).is_file() else None
    try:
        with session(args, settings, None if plan_file else args.target) as s:
            if plan_file is not None:
                return _apply_file(args, s, plan_file)
            return _apply_directory(args, s)
    except CommandError as exc:
        return fail(str(exc))


def _apply_file(args: argparse.Namespace, s: Session, path: Path) -> int:
    try:
        plan = load_plan(path)
    except PlanFileError as exc:
        raise CommandError(str(exc)) from None
    result = apply_saved(plan, s.org.source, s.settings, head=s.org.head, store=s.store, secrets=s.secrets,
                         backends=s.backends, allow_mass_delete=args.allow_mass_delete, strict=args.strict,
                         options=options(args, s.settings))
    report(s.org.rebase(result.diagnostics), args.color)
    return finish(args, result)


def _apply_directory(args: argparse.Namespace, s: Session) -> int:
    preview = reconcile(s.org.source, s.settings, head=s.org.head, store=s.store, secrets=s.secrets,
                        backends=s.backends, dry_run=True, strict=args.strict)
    report(s.org.rebase(preview.diagnostics), args.color)
    if preview.plan is None or preview.error:
        return finish(args, preview)
    if args.format == "text":
        sys.stdout.write(render_plan(preview.plan, args.color) + "\n")
    if preview.plan.has_changes and not args.auto_approve and not approved(preview.plan):
        print("hiclaw-gitops: apply cancelled; nothing was changed", file=sys.stderr)
        return 1
    result = apply_saved(preview.plan, s.org.source, s.settings, head=preview.head, store=s.store,
                         secrets=s.secrets, backends=s.backends, allow_mass_delete=args.allow_mass_delete,
                         strict=args.strict, options=options(args, s.settings))
    return finish(args, result)


def approved(plan: Plan) -> bool:
    """Ask on a terminal; refuse (CommandError) when nobody can be asked."""
    if not sys.stdin.isatty():
        raise CommandError("the plan has changes and stdin is not a terminal: pass --auto-approve to apply")
    if plan.guard.get("tripped"):
        from gitops.plan.guard import guard_names

        print(f"Warning: the {guard_names(plan.guard)} tripped; without --allow-mass-delete this plan is refused.")
    try:
        answer = input("Apply these changes? Only 'yes' is accepted: ")
    except EOFError:
        return False
    return answer.strip() == "yes"


def finish(args: argparse.Namespace, result: ReconcileResult) -> int:
    """Print the outcome (text or JSON) and return the exit code: 0 only when applied and verified."""
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        if result.error:
            print(f"hiclaw-gitops: {result.error}", file=sys.stderr)
        if result.run is not None:
            sys.stdout.write(render_result(result.run, args.color))
    return 0 if result.phase == "applied" else 1


def render_plan(plan: Plan, color: bool) -> str:
    from gitops.commands.plan import render

    return render(plan.to_dict(), "text", color)


def render_result(run: RunResult, color: bool = False) -> str:
    """The change set: one line per object that changed, failed or was skipped, then one closing line."""
    lines: list[str] = []
    for status, symbol in RESULT_SYMBOLS.items():
        for step in run.with_status(status):
            text = f"{symbol} {step.key}: {status.value}" + (f" — {step.message}" if step.message else "")
            if color:
                shade = {"+": "32", "~": "33", "-": "31", "!": "31;1", "·": "2"}[symbol]
                text = f"\033[{shade}m{text}\033[0m"
            lines.append(text)
    lines.append(closing_line(run))
    return "\n".join(lines) + "\n"


def closing_line(run: RunResult) -> str:
    if run.refused:
        return f"Apply refused: {run.refused}."
    c = run.counts()
    done = f"{c['created']} created, {c['configured']} configured, {c['deleted']} deleted, {c['unchanged']} unchanged"
    if run.ok:
        return f"Apply complete: {done}; verified."
    trouble = f"{c['failed']} failed, {c['skipped']} skipped"
    return f"Apply incomplete: {done}; {trouble}{'' if run.verified else '; not verified'}."
