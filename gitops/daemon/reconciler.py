"""One pass, whatever the source: run the pass on a commit, merge with the previous status, count, escalate.

The outcome of a pass becomes a status snapshot, metrics, log lines and — when something keeps failing —
an escalation message. Pollers decide *when* a commit is processed; the Reconciler decides *what* that means.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gitops.daemon.logs import event
from gitops.daemon.loopstate import LoopState
from gitops.daemon.metrics import Metrics
from gitops.daemon.notify import EscalationTracker, Failure
from gitops.diagnostics import Diagnostic, counts, diag
from gitops.settings.load import REDACTOR
from gitops.settings.model import Settings
from gitops.source.files import FileSource
from gitops.status.model import (
    PassResult,
    Phase,
    Result,
    RunSummary,
    StatusSnapshot,
    merge,
    now_iso,
)
from gitops.status.store import StatusStore

Pass = Callable[[FileSource, str], PassResult]


class Reconciler:
    """Turns a commit into status: run the pass, merge with the previous status, write, count, escalate."""

    def __init__(
        self,
        settings: Settings,
        pass_fn: Pass,
        *,
        store: StatusStore | None,
        metrics: Metrics,
        tracker: EscalationTracker,
        state: LoopState,
        state_path: Path | None,
        source_label: str = "",
    ) -> None:
        self.settings = settings
        self.pass_fn = pass_fn
        self.store = store
        self.metrics = metrics
        self.tracker = tracker
        self.state = state
        self.state_path = state_path
        self.source_label = source_label

    def save_state(self) -> None:
        self.state.escalation = dict(self.tracker.notified)
        if self.state_path is not None:
            self.state.save(self.state_path)

    def run_pass(
        self,
        source: FileSource | None,
        commit: str,
        *,
        previous: StatusSnapshot,
        extra: tuple[Diagnostic, ...] = (),
        refused: PassResult | None = None,
        force_push: Mapping[str, str] | None = None,
        signature: Mapping[str, Any] | None = None,
    ) -> tuple[StatusSnapshot, PassResult, float]:
        started = time.monotonic()
        if refused is not None or source is None:
            outcome = refused or PassResult(Result.REFUSED)
        else:
            try:
                outcome = self.pass_fn(source, commit)
            except Exception as exc:  # the pass is someone else's code: report it, never die of it
                event(logging.ERROR, "pass crashed", commit=commit, error=REDACTOR.redact(repr(exc)))
                crash = diag("G612", f"the reconcile pass failed: {REDACTOR.redact(str(exc) or repr(exc))}",
                             hint="see the daemon's log; the pass is retried with backoff")
                outcome = PassResult(Result.FAILED, (crash,), message=crash.message)
        if extra:
            outcome = replace(outcome, diagnostics=(*extra, *outcome.diagnostics))
        good = commit if outcome.result in (Result.RECONCILED, Result.VALIDATED) else self.state.last_good_commit
        summary = RunSummary(
            commit=commit,
            result=outcome.result.value,
            message=outcome.message,
            time=now_iso(),
            previous_commit=self.state.last_commit,
            last_good_commit=good,
            diagnostics=outcome.diagnostics,
            plan=outcome.plan,
            force_push=force_push,
            signature=signature,
            source=self.source_label,
        )
        snapshot = merge(previous, outcome, summary, self.settings.notify.after_failures)
        return snapshot, outcome, time.monotonic() - started

    def finish(self, snapshot: StatusSnapshot, outcome: PassResult, seconds: float, commit: str) -> None:
        """Metrics, escalation and the log line for a pass whose status is recorded."""
        result = outcome.result.value
        self.metrics.observe_pass(result, seconds, commit, time.time(), snapshot)
        self.metrics.count_failures(outcome.provider_failures)
        failing = {
            r.key: Failure(r.last_error or "failed", r.failures)
            for r in snapshot.resources.values()
            if r.phase in (Phase.FAILED.value, Phase.DEGRADED.value)
        }
        applied = outcome.result in (Result.RECONCILED, Result.VALIDATED, Result.FAILED) and bool(outcome.resources)
        observed = set(snapshot.resources) if applied else set()
        self.escalate(failing, commit, observed)
        if outcome.result is Result.FAILED and not outcome.resources:  # the pass itself failed
            first = outcome.diagnostics[0] if outcome.diagnostics else diag("G612", outcome.message or "failed")
            self.source_failed("pass", first, commit)
        else:
            self.source_ok("pass", commit)
        self.state.last_commit = commit
        self.state.last_result = result
        if result in (Result.RECONCILED.value, Result.VALIDATED.value):
            self.state.last_good_commit = commit
        errors, warnings = counts(outcome.diagnostics)
        event(logging.INFO if result in ("Reconciled", "Validated") else logging.WARNING, "pass finished",
              commit=commit, result=result, seconds=round(seconds, 3), errors=errors, warnings=warnings,
              phases=snapshot.phases(), message=REDACTOR.redact(outcome.message))

    def escalate(self, failing: Mapping[str, Failure], commit: str, observed: set[str]) -> None:
        self.tracker.observe(failing, commit, observed=observed)

    def source_failed(self, what: str, d: Diagnostic, commit: str = "") -> None:
        """Count a failure of the source or the status push and escalate after K in a row."""
        n = self.state.failures.get(what, 0) + 1
        self.state.failures[what] = n
        key = f"hiclaw-gitops/{what}"
        action = {
            "source": "check source.url, the credentials and the network; the daemon retries with backoff",
            "status": "check that the reconciler may push to the status branch (protection rules, hooks)",
            "pass": "read the daemon's log for the failing step; the pass is retried with backoff",
        }.get(what, "see the daemon's log")
        failing = {key: Failure(d.message, n, action)}
        self.tracker.observe(failing, commit or self.state.last_commit, observed=set())

    def source_ok(self, what: str, commit: str = "") -> None:
        if self.state.failures.get(what):
            self.state.failures[what] = 0
        key = f"hiclaw-gitops/{what}"
        if key in self.tracker.notified and self.tracker.observe({}, commit or self.state.last_commit,
                                                                 observed={key}):
            self.save_state()
