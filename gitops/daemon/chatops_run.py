"""What chat commands do, on the daemon's loop thread, and the pass wrapper that guards, suspends and approves.

`execute` carries out one parsed command and returns its reply and outcome. `GuardedPass` wraps the daemon's
pass: while suspended it only plans (status `Suspended`); when a guard stops a plan (the prune guard: many agents
deleted; the state guard: many running agents stopped by enforce-state) it asks the room for approval; with an
approval granted for the commit it applies exactly the approved plan, once, if its head commit and
observed-state fingerprint still hold (docs/chatops.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gitops.daemon.chatops_commands import Command, help_text
from gitops.daemon.pollers import PollOutcome
from gitops.pipeline import ReconcileResult, apply_saved
from gitops.plan.guard import guard_names
from gitops.plan.model import Action, Plan
from gitops.status.model import PassResult, Result, StatusSnapshot
from gitops.status.outcome import planned_only, to_pass_result
from gitops.views.text import closing_line

if TYPE_CHECKING:
    from gitops.daemon.chatops import ChatOps
    from gitops.daemon.chatops_state import Approval

MAX_LISTED = 25
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _listed(items: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … and {len(items) - limit} more" if len(items) > limit else "") if items else "none"


class GuardedPass:
    """The daemon's pass (`DaemonPass`), suspended, guarded and approved from chat."""

    def __init__(self, inner: Any, chat: ChatOps) -> None:
        self.inner = inner
        self.chat = chat

    @property
    def preempt(self) -> Any:
        return self.inner.preempt

    @preempt.setter
    def preempt(self, value: Any) -> None:
        self.inner.preempt = value

    def drift(self, source: Any, commit: str) -> int:
        try:
            with self.chat.running(commit, "a drift check"):
                changes = int(self.inner.drift(source, commit))
        except Exception as exc:
            self.chat.last_drift = (commit, str(exc))
            raise
        self.chat.last_drift = (commit, changes)
        return changes

    def close(self) -> None:
        self.inner.close()

    def _as_status(self, result: ReconcileResult, commit: str) -> PassResult:
        prefix = self.inner.settings.source.path
        if not self.inner.backends and result.valid:
            return planned_only(result, commit, prefix)
        return to_pass_result(result, commit, prefix)

    def __call__(self, source: Any, commit: str) -> PassResult:
        with self.chat.running(commit):
            return self._pass(source, commit)

    def _pass(self, source: Any, commit: str) -> PassResult:
        chat = self.chat
        self._void_older(commit)
        if chat.suspended:
            result = self.inner._reconcile(source, commit, dry_run=True)
            self._learn(result)
            planned = self._as_status(result, commit)
            if result.plan is None:
                return planned
            who = chat.state.suspended
            message = (f"applying is suspended (by {who.get('by', '?')} in chat at {who.get('at', '?')}); "
                       f"nothing was applied. {closing_line(result.plan.counts())}")
            return PassResult(Result.SUSPENDED, planned.diagnostics, planned.resources, plan=planned.plan,
                              message=message)
        grant = chat.grant
        if grant is not None and grant.commit == commit and grant.plan is not None:
            chat.grant = None
            fresh = self.inner._reconcile(source, commit, dry_run=True)
            if fresh.plan is not None and fresh.plan.fingerprint == grant.fingerprint:
                applied = apply_saved(Plan.from_dict(grant.plan), source, self.inner.settings, head=commit,
                                      store=self.inner.store, secrets=self.inner.secrets,
                                      backends=self.inner.backends, allow_mass_delete=True, stop=self.inner.stop)
                grant.status = "applied" if applied.ok else "failed"
                grant.note = applied.error or (f"{len(applied.run.failed)} change(s) failed" if applied.run
                                               and not applied.run.ok else "")
                chat.put(grant)
                self._learn(applied)
                return self._as_status(applied, commit)
            grant.status, grant.note = "void", "the live state changed since the plan was made"
            chat.put(grant)
        result = self.inner._reconcile(source, commit, dry_run=False)
        self._learn(result)
        self._ask(result, commit)
        return self._as_status(result, commit)

    def _void_older(self, commit: str) -> None:
        chat = self.chat
        for ident, data in list(chat.state.approvals.items()):
            if data["status"] == "pending" and data["commit"] != commit:
                a = chat.approval(ident)
                assert a is not None
                a.status, a.note = "void", f"a newer commit {commit[:12]} replaced {a.commit[:12]}"
                chat.put(a)
                chat.say(f"approval {a.id} is void: {a.note}; nothing of it was applied")

    def _learn(self, result: ReconcileResult) -> None:
        if result.read is not None:
            self.chat.level1 = level_one(result.read, self.inner.settings.server_name)

    def learn_from(self, tree: Any, commit: str) -> None:
        """Who the level-1 Humans of `commit` are, before any pass of this daemon ran (a restart)."""
        from gitops.pipeline import read_org

        self.chat.level1 = level_one(read_org(tree, head=commit, server_name=self.inner.settings.server_name),
                                     self.inner.settings.server_name)

    def _ask(self, result: ReconcileResult, commit: str) -> None:
        """When a guard stopped the plan: ask the room for an approval of exactly this plan, listing the agents
        it would delete (the prune guard) and those it would stop or put to sleep (the state guard)."""
        plan, run = result.plan, result.run
        if plan is None or run is None or not run.refused or not plan.guard.get("tripped"):
            return
        chat = self.chat
        deletes = [c.key for c in plan.changes if c.action is Action.DELETE]
        agents = [str(a) for a in plan.guard.get("deleted_agents", ())]
        stopped = [str(a) for a in plan.guard.get("stopped_agents", ())]
        reasons = [str(r) for r in plan.guard.get("reasons", ())]
        a, new = chat.new_approval(commit, plan.fingerprint, agents, reasons, plan.to_dict(), stopped)
        if not new:
            return
        prefix = chat.conf.prefix
        lines = [f"🛑 hiclaw-gitops: the {guard_names(plan.guard)} stopped commit {commit[:12]}",
                 f"Why: {'; '.join(reasons)}"]
        if agents or deletes:
            lines += [f"Agents deleted: {_listed(agents)}", f"Objects deleted ({len(deletes)}): {_listed(deletes)}"]
        if stopped:
            lines.append(f"Agents stopped or put to sleep (enforce-state): {_listed(stopped)}")
        a.event_id = chat.say("\n".join([
            *lines,
            closing_line(plan.counts()),
            f"Approval ID: {a.id}",
            f"To apply exactly this plan once: {prefix} approve {a.id} (until {_stamp(a.expires)}); to drop it: "
            f"{prefix} reject {a.id} (or reply to this message with {prefix} approve / reject). A newer commit "
            "or a change of the live state voids it.",
        ]))
        chat.put(a)


def level_one(read: Any, server: str) -> frozenset[str]:
    """The Matrix IDs of the level-1 Humans of a valid org (they may command when chatops.level1_humans is on)."""
    if not read.ok:
        return frozenset()
    from gitops.compile.identities import human_mxid

    return frozenset(human_mxid(r, server) for r in read.validation.org.resources()
                     if r.kind == "Human" and r.spec.get("permissionLevel") == 1)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


# Commands ------------------------------------------------------------------------------------------


def execute(chat: ChatOps, command: Command, sender: str, inner: Callable[[], PollOutcome]) -> tuple[str, str]:
    """Carry out one command; (reply, outcome)."""
    name, args = command.name, command.args
    if name == "help":
        return help_text(chat.conf.prefix), "done"
    if name == "status":
        return status_reply(chat, args[0] if args else ""), "done"
    if name == "plan":
        return plan_reply(chat), "done"
    if name == "sync":
        chat.force()
        outcome = inner()
        return f"sync: {last_run(chat)}", "failed" if outcome.failed else "done"
    if name == "drift":
        return drift_reply(chat), "done"
    if name == "suspend":
        if chat.suspended:
            return f"applying is already suspended (by {chat.state.suspended.get('by')})", "done"
        chat.state.suspended = {"by": sender, "at": _stamp(chat.clock())}
        chat.save()
        return ("applying is suspended: passes go on planning and writing status, nothing is applied until "
                f"`{chat.conf.prefix} resume`"), "done"
    if name == "resume":
        if not chat.suspended:
            return "applying is not suspended; nothing to resume", "done"
        chat.state.suspended = {}
        chat.save()
        chat.force()
        inner()
        return f"applying resumed; {last_run(chat)}", "done"
    return decide(chat, args[0], sender, inner, approve=name == "approve")


def decide(chat: ChatOps, ident: str, sender: str, inner: Callable[[], PollOutcome], *,
           approve: bool) -> tuple[str, str]:
    a = chat.approval(ident)
    if a is None:
        return f"there is no approval {ident}; nothing was done", "rejected"
    if a.status == "pending" and chat.clock() > a.expires:
        a.status, a.note = "expired", f"it expired at {_stamp(a.expires)}"
        chat.put(a)
    if a.status != "pending":
        return f"approval {a.id} cannot be used: {settled(a)}; nothing was done", "rejected"
    if not approve:
        a.status, a.by, a.note = "rejected", sender, f"rejected by {sender}"
        chat.put(a)
        return (f"approval {a.id} rejected: commit {a.commit[:12]} stays unapplied (revert or fix the org "
                "chart, then push)"), "done"
    if chat.suspended:
        return f"applying is suspended; `{chat.conf.prefix} resume` first (approval {a.id} stays pending)", "rejected"
    a.status, a.by = "applying", sender  # used from here on, even if the daemon dies mid-apply: never twice
    chat.put(a)
    chat.grant = a
    chat.force()
    try:
        inner()
    finally:
        chat.grant = None
    done = chat.approval(a.id)
    assert done is not None
    if done.status == "applying":  # the pass never reached it: a newer commit came first
        done.status, done.note = "void", "a newer commit arrived before it could be applied"
        chat.put(done)
    if done.status == "applied":
        return f"approval {a.id} by {sender}: commit {a.commit[:12]} applied once; {last_run(chat)}", "done"
    return f"approval {a.id} was not applied: {settled(done)}; {last_run(chat)}", "failed"


def settled(a: Approval) -> str:
    return {
        "applying": "it is being applied, or was (it is used once only)",
        "applied": f"it was already used by {a.by}, and the plan applied",
        "failed": f"it was already used by {a.by}; the apply failed: {a.note}",
        "rejected": a.note or "it was rejected",
        "void": f"it is void: {a.note}",
        "expired": a.note or "it expired",
    }.get(a.status, a.status)


def snapshot(chat: ChatOps) -> StatusSnapshot | None:
    store = chat.reconciler.store
    if store is None:
        return None
    return store.read()


def last_run(chat: ChatOps) -> str:
    snap = snapshot(chat)
    s = snap.summary if snap is not None else None
    state = chat.reconciler.state
    if s is None:
        return f"last run: {state.last_result or 'none yet'} {state.last_commit[:12]}".strip()
    return f"last run: {s.result} for commit {s.commit[:12]} at {s.time}: {_first(s.message)}"


def _first(text: str) -> str:
    return URL.sub("<link>", text.strip().splitlines()[0] if text.strip() else "")


def status_reply(chat: ChatOps, name: str) -> str:
    snap = snapshot(chat)
    if snap is None:
        return f"status write-back is off; {last_run(chat)}"
    if name:
        wanted = name.lower()
        found = [r for r in snap.sorted_resources() if wanted in (r.name.lower(), r.key.lower())]
        if not found:
            return f"no resource named `{name[:63]}` in the status; try `{chat.conf.prefix} status`"
        lines = []
        for r in found:
            lines.append(f"{r.key}: {r.phase}, commit {r.observed_commit[:12] or '—'}, failures {r.failures}")
            lines += [f"  {c.type}: {c.status} ({c.reason}){' — ' + _first(c.message) if c.message else ''}"
                      for c in r.conditions]
            if r.last_error:
                lines.append(f"  last error: {_first(r.last_error)}")
        return "\n".join(lines)
    phases = ", ".join(f"{n} {p}" for p, n in sorted(snap.phases().items())) or "no resources"
    pending = sorted(k for k, v in chat.state.approvals.items() if v["status"] == "pending"
                     and v["expires"] > chat.clock())
    lines = [last_run(chat), f"resources: {phases}",
             f"applying: {'suspended by ' + chat.state.suspended.get('by', '?') if chat.suspended else 'active'}"]
    if pending:
        lines.append(f"approvals waiting: {', '.join(pending)}")
    return "\n".join(lines)


def plan_reply(chat: ChatOps) -> str:
    snap = snapshot(chat)
    plan = snap.summary.plan if snap is not None and snap.summary is not None else None
    if not plan:
        return "no plan yet: the last run made none (or status write-back is off)"
    assert snap is not None and snap.summary is not None
    lines = [f"plan of commit {snap.summary.commit[:12]} ({snap.summary.result}): "
             f"{closing_line(plan.get('counts') or {})}"]
    summaries = [s for s in plan.get("summaries") or [] if isinstance(s, dict)]
    for s in summaries[:MAX_LISTED]:
        details = "; ".join(str(d) for d in s.get("details") or [])
        lines.append(f"• {s.get('ref')}: {s.get('status')}{' — ' + details if details else ''}")
    if len(summaries) > MAX_LISTED:
        lines.append(f"… and {len(summaries) - MAX_LISTED} more (hiclaw-gitops status / show)")
    lines += [f"⚠ {w}" for w in list(plan.get("warnings") or [])[:5]]
    return URL.sub("<link>", "\n".join(lines))


def drift_reply(chat: ChatOps) -> str:
    state = chat.reconciler.state
    check = getattr(chat.poller, "check_drift", None)
    if check is None or state.last_result != Result.RECONCILED.value:
        return f"nothing to check: drift is measured from a reconciled commit; {last_run(chat)}"
    chat.last_drift = None
    check(state.last_seen_head)
    if chat.last_drift is None:
        return "drift was not checked: no provider is configured"
    commit, found = chat.last_drift
    if isinstance(found, str):
        return f"the drift check of {commit[:12]} failed: {_first(found)}"
    if not found:
        return f"no drift: live state matches commit {commit[:12]}"
    heal = chat.settings.drift.mode == "heal"
    return (f"{found} change(s) drifted from commit {commit[:12]}; "
            + (f"healed: {last_run(chat)}" if heal else "reported only (drift.mode: report); `sync` heals"))

