"""Polling a source: decide whether the org changed and hand each new commit (or directory state) to the Reconciler.

A git poll asks the remote for its head (one round trip) and stops there when nothing changed: no fetch,
no write. A new head is fetched, checked (force-push, signature), read straight from its commit tree and
run through the Reconciler, and its status is written as one status commit. In development mode the org
is a local directory, processed whenever its YAML content changes (optionally woken by a file watcher).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any

from gitops.daemon.health import Health
from gitops.daemon.logs import event
from gitops.daemon.loopstate import LoopState
from gitops.daemon.metrics import Metrics
from gitops.daemon.reconciler import Reconciler
from gitops.diagnostics import Diagnostic, diag
from gitops.orgfiles import RESERVED_NAMES, OrgFiles, not_org_documents
from gitops.source.files import DirectorySource, FileSource, is_yaml
from gitops.source.git import Ancestry, GitSource, GitSourceError
from gitops.source.signatures import SignatureVerifier
from gitops.status.model import PassResult, Result, StatusSnapshot
from gitops.status.store import GitStatusStore, StatusStore


class PollOutcome(StrEnum):
    UNCHANGED = "unchanged"  # the head did not move: nothing fetched, nothing written
    SEEN = "seen"  # the head moved, but only to an org commit already processed (a status commit)
    PROCESSED = "processed"
    RETRY = "retry"  # processed, but something failed that a later attempt may fix
    ERROR = "error"  # the source could not be read

    @property
    def failed(self) -> bool:
        return self in (PollOutcome.RETRY, PollOutcome.ERROR)


class GitPoller:
    """Polls a GitSource: compare heads, fetch, check, run the pass and write the status commit."""

    def __init__(
        self,
        source: GitSource,
        reconciler: Reconciler,
        store: GitStatusStore | None,
        *,
        verifier: SignatureVerifier | None = None,
        health: Health | None = None,
    ) -> None:
        self.source = source
        self.reconciler = reconciler
        self.store = store
        self.verifier = verifier
        self.health = health or Health()
        self.settings = reconciler.settings
        self.force_next = reconciler.state.last_result in (Result.REFUSED.value, Result.FAILED.value)
        self.unchanged_polls = 0
        self._bootstrap()

    def check_drift(self, head: str) -> PollOutcome:
        """Every `drift.every_polls` unchanged polls: plan the last reconciled commit against live state again.
        `report` logs and counts what drifted; `heal` reconciles the commit again (with its status commit)."""
        drift = getattr(self.reconciler.pass_fn, "drift", None)
        commit = self.state.last_commit
        if drift is None or not commit or self.state.last_result != Result.RECONCILED.value:
            return PollOutcome.UNCHANGED  # nothing applied to drift from, or no provider to observe
        try:
            changes = int(drift(self._tree(commit), commit))
        except Exception as exc:
            event(logging.WARNING, "drift check failed", commit=commit, error=str(exc))
            self.metrics.drift_checks.labels("error").inc()
            return PollOutcome.UNCHANGED
        self.metrics.drift_changes.set(changes)
        self.metrics.drift_checks.labels("drift" if changes else "clean").inc()
        if not changes:
            return PollOutcome.UNCHANGED
        heal = self.settings.drift.mode == "heal"
        event(logging.WARNING, "live state drifted from the last reconciled commit", commit=commit,
              changes=changes, action="healing" if heal else "reported (drift.mode: report)")
        return self.process(commit, head) if heal else PollOutcome.UNCHANGED

    @property
    def state(self) -> LoopState:
        return self.reconciler.state

    @property
    def metrics(self) -> Metrics:
        return self.reconciler.metrics

    def _status_path(self) -> str:
        return self.store.prefix if self.store is not None and self.store.same_branch else ""

    def _tree(self, commit: str) -> FileSource:
        """The org at `commit`: under source.path, without the status files kept on the same branch."""
        exclude = [self._status_path()] if self._status_path() else []
        return OrgFiles(self.source.tree_source(commit, self.settings.source.path, exclude), RESERVED_NAMES)

    def _bootstrap(self) -> None:
        """With no local state, the status branch tells where the previous daemon stopped."""
        if self.state.last_commit or self.store is None:
            return
        try:
            self.store.fetch()
            last = self.store.last_reconciled()
        except GitSourceError:
            return
        if last:
            self.state.last_commit = last

    def poll(self) -> PollOutcome:
        try:
            head = self.source.head()
        except GitSourceError as exc:
            return self._source_error(exc.diagnostic)
        self.health.set_ready(True, "")
        self.metrics.ready.set(1)
        retry = self.force_next or self.state.last_result == Result.FAILED.value
        if head == self.state.last_seen_head and not retry:
            self.metrics.polls.labels("unchanged").inc()
            self.reconciler.source_ok("source")
            self.unchanged_polls += 1
            every = self.settings.drift.every_polls
            if every > 0 and self.unchanged_polls % every == 0:
                return self.check_drift(head)
            return PollOutcome.UNCHANGED
        try:
            tip = self.source.fetch()
            commit = self.source.org_commit(tip, self._status_path())
        except GitSourceError as exc:
            return self._source_error(exc.diagnostic)
        self.reconciler.source_ok("source", commit)
        if commit == self.state.last_commit and not retry:
            self.state.last_seen_head = tip
            self.reconciler.save_state()
            self.metrics.polls.labels("seen").inc()
            event(logging.INFO, "the head is a commit already processed (a status commit); nothing to do",
                  head=tip, commit=commit)
            return PollOutcome.SEEN
        self.metrics.polls.labels("changed").inc()
        self.force_next = False
        return self.process(commit, tip)

    def _source_error(self, d: Diagnostic) -> PollOutcome:
        self.metrics.polls.labels("error").inc()
        self.metrics.provider_failures.labels("git").inc()
        self.metrics.ready.set(0)
        self.health.set_ready(False, d.message)
        event(logging.ERROR, "source unavailable", code=d.code, error=d.message, hint=d.hint,
              source=self.source.label)
        self.reconciler.source_failed("source", d)
        self.reconciler.save_state()
        return PollOutcome.ERROR

    def process(self, commit: str, tip: str) -> PollOutcome:
        extra: list[Diagnostic] = []
        refused: PassResult | None = None
        force_push: dict[str, str] | None = None
        signature: dict[str, Any] | None = None
        previous_commit = self.state.last_commit
        ancestry = self.source.ancestry(previous_commit, commit)
        if ancestry is Ancestry.REWRITTEN:
            self.metrics.force_pushes.inc()
            force_push = {"previous": previous_commit, "new": commit}
            warn = diag("G605", f"the branch `{self.source.branch}` was rewritten: the previously reconciled commit "
                                f"{previous_commit[:12]} is not an ancestor of {commit[:12]}",
                        hint="someone force-pushed; check that the new history is intended (git reflog on the server)")
            event(logging.WARNING, "force-push detected", previous=previous_commit, new=commit,
                  branch=self.source.branch)
            if self.settings.source.allow_force_push:
                extra.append(warn)
            else:
                refusal = diag("G610", f"commit {commit[:12]} replaces rewritten history and "
                                       "source.allow_force_push is false; it is not reconciled",
                               hint="review the rewrite, then set source.allow_force_push: true or push a commit "
                                    f"descending from {previous_commit[:12]}")
                refused = PassResult(Result.REFUSED, (warn, refusal), message=refusal.message)
        if refused is None and self.verifier is not None:
            check = self.verifier.verify(self.source.commit(commit))
            signature = check.to_dict()
            if not check.ok and check.diagnostic is not None:
                refused = PassResult(Result.REFUSED, (check.diagnostic,), message=check.diagnostic.message)
                event(logging.ERROR, "commit refused: signature", commit=commit, code=check.diagnostic.code,
                      error=check.diagnostic.message)
        tree = None if refused else self._tree(commit)
        try:
            previous = self._previous()
        except GitSourceError as exc:
            return self._status_error(exc.diagnostic, commit)
        if hasattr(self.reconciler.pass_fn, "preempt"):  # a newer commit on the branch stops work still waiting
            self.reconciler.pass_fn.preempt = lambda: self.source.head() != tip
        snapshot, outcome, seconds = self.reconciler.run_pass(
            tree, commit, previous=previous, extra=tuple(extra), refused=refused, force_push=force_push,
            signature=signature,
        )
        status_commit = None
        if self.store is not None:
            try:
                status_commit = self.store.write(snapshot)
            except GitSourceError as exc:
                self.reconciler.finish(snapshot, outcome, seconds, commit)
                self.state.last_result = Result.FAILED.value  # so the same commit is processed again
                return self._status_error(exc.diagnostic, commit)
            self.metrics.status_writes.labels("written" if status_commit else "unchanged").inc()
            self.reconciler.source_ok("status", commit)
        self.reconciler.finish(snapshot, outcome, seconds, commit)
        self.state.last_seen_head = tip
        # In same-branch mode our own commit is now the head: remember it so the next poll does not fetch
        # for nothing — unless someone else's commit slipped in underneath it.
        if (
            status_commit
            and self.store is not None
            and self.store.same_branch
            and self.source.org_commit(status_commit, self._status_path()) == commit
        ):
            self.state.last_seen_head = status_commit
        self.reconciler.save_state()
        event(logging.INFO, "status written" if status_commit else "status unchanged",
              commit=commit, status_commit=status_commit or "", attempts=getattr(self.store, "attempts", 0))
        return PollOutcome.RETRY if outcome.result is Result.FAILED else PollOutcome.PROCESSED

    def _previous(self) -> StatusSnapshot:
        if self.store is None:
            return StatusSnapshot()
        self.store.fetch()
        return self.store.read()

    def _status_error(self, d: Diagnostic, commit: str) -> PollOutcome:
        self.metrics.status_writes.labels("failed").inc()
        self.metrics.provider_failures.labels("git").inc()
        event(logging.ERROR, "status not written", code=d.code, error=d.message, hint=d.hint, commit=commit)
        self.reconciler.source_failed("status", d, commit)
        self.reconciler.save_state()
        return PollOutcome.RETRY


class DirectoryPoller:
    """Development mode: the org is a local directory; a pass runs whenever its YAML content changes."""

    def __init__(self, root: str | os.PathLike[str], reconciler: Reconciler, store: StatusStore | None) -> None:
        self.root = Path(root)
        self.reconciler = reconciler
        self.store = store
        self.digest = ""

    def poll(self) -> PollOutcome:
        folder = DirectorySource(self.root)
        if not folder.root.is_dir():
            d = diag("G601", f"{self.root} is not a directory", hint="check --watch")
            event(logging.ERROR, "source unavailable", code=d.code, error=d.message)
            return PollOutcome.ERROR
        state_dir = self.reconciler.settings.state_dir
        source = OrgFiles(folder, not_org_documents(folder.root, state_dir, None))
        digest = directory_digest(source)
        if digest == self.digest and self.reconciler.state.last_result != Result.FAILED.value:
            self.reconciler.metrics.polls.labels("unchanged").inc()
            return PollOutcome.UNCHANGED
        self.reconciler.metrics.polls.labels("changed").inc()
        self.digest = digest
        commit = f"dir:{digest}"
        previous = self.store.read() if self.store is not None else StatusSnapshot()
        snapshot, outcome, seconds = self.reconciler.run_pass(source, commit, previous=previous)
        if self.store is not None:
            self.store.write(snapshot)
        self.reconciler.finish(snapshot, outcome, seconds, commit)
        self.reconciler.save_state()
        return PollOutcome.RETRY if outcome.result is Result.FAILED else PollOutcome.PROCESSED


def directory_digest(source: FileSource) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    for f in source.files():
        h.update(f"{f.path}\0{f.blob_id}\n".encode())
    for p in source.problems():
        h.update(f"{p.code}\0{p.file}\0{p.message}\n".encode())
    return h.hexdigest()


def watch_directory(root: str | os.PathLike[str], wake: threading.Event, stop: threading.Event,
                    step_ms: int = 300, ready: threading.Event | None = None) -> threading.Thread:
    """A thread that wakes the loop when a YAML file (or .hiclawignore) under root changes. `ready` is set once
    the watch is in place (changes made before that are seen by the next poll, not by the watcher)."""
    from watchfiles import Change, DefaultFilter, watch

    class OrgFilter(DefaultFilter):
        def __call__(self, change: Change, path: str) -> bool:
            name = os.path.basename(path)
            return bool(super().__call__(change, path)) and (is_yaml(name) or name == ".hiclawignore")

    def run() -> None:
        # The watch exists once the generator first yields; an empty yield (a timeout) only says so.
        for changes in watch(Path(root), watch_filter=OrgFilter(), stop_event=stop, step=step_ms, debounce=1600,
                             raise_interrupt=False, rust_timeout=max(step_ms, 100), yield_on_timeout=True):
            if ready is not None:
                ready.set()
            if not changes:
                continue
            event(logging.INFO, "files changed", files=sorted(p for _, p in changes)[:20])
            wake.set()

    thread = threading.Thread(target=run, name="hiclaw-watch", daemon=True)
    thread.start()
    return thread
