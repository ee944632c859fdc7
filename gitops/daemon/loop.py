"""The daemon: poll the source, run one pass per new commit, write status back, serve health and metrics.

A poll asks the remote for its head (one round trip) and stops there when nothing changed: no fetch,
no write. A new head is fetched, checked (force-push, signature), read straight from its commit tree and
handed to the injected pass (load + validate, then the engine when there is one). The outcome becomes
one status commit, metrics, log lines and — when something keeps failing — an escalation message.
One daemon per state directory (a file lock); SIGTERM lets the pass in flight finish, then exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any

from gitops.daemon.metrics import CONTENT_TYPE, Metrics
from gitops.daemon.notify import EscalationTracker, Failure
from gitops.diagnostics import Diagnostic, counts, diag
from gitops.settings.load import REDACTOR
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource, FileSource, is_yaml
from gitops.source.git import Ancestry, GitSource, GitSourceError, SignatureVerifier
from gitops.status.model import (
    GitStatusStore,
    PassResult,
    Phase,
    Result,
    RunSummary,
    StatusSnapshot,
    StatusStore,
    merge,
    now_iso,
)

log = logging.getLogger("hiclaw_gitops")

Pass = Callable[[FileSource, str], PassResult]
MAX_WEBHOOK_BYTES = 1 << 20


# Logging --------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg and the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            body.update(fields)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return REDACTOR.redact(json.dumps(body, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = " ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, Mapping) else ""
        line = f"{record.levelname.lower():7} {record.getMessage()}" + (f"  {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return REDACTOR.redact(line)


def configure_logging(fmt: str = "json", stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Route the product's loggers to one handler; every line passes the secret redactor."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("hiclaw_gitops")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler


def event(level: int, msg: str, **fields: Any) -> None:
    log.log(level, msg, extra={"fields": fields})


# State directory ------------------------------------------------------------------------------------


class LockHeld(Exception):
    def __init__(self, path: Path, pid: str) -> None:
        self.path, self.pid = path, pid
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"another hiclaw-gitops daemon{who} is running on this state directory ({path.parent})")


class StateLock:
    """One active daemon per state directory: an exclusive, non-blocking flock held for the process's life."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LockHeld(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(slots=True)
class LoopState:
    """What the daemon must remember across restarts (state_dir/loop.json)."""

    last_commit: str = ""  # the last org commit a pass processed
    last_result: str = ""
    last_seen_head: str = ""  # the remote head at that time (may be our own status commit)
    last_good_commit: str = ""
    escalation: dict[str, str] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # consecutive failures of the source, the status push

    @classmethod
    def load(cls, path: Path) -> LoopState:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".loop-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, indent=2, sort_keys=True)
        os.replace(tmp, path)


# One pass, whatever the source ----------------------------------------------------------------------


class PollOutcome(StrEnum):
    UNCHANGED = "unchanged"  # the head did not move: nothing fetched, nothing written
    SEEN = "seen"  # the head moved, but only to an org commit already processed (a status commit)
    PROCESSED = "processed"
    RETRY = "retry"  # processed, but something failed that a later attempt may fix
    ERROR = "error"  # the source could not be read

    @property
    def failed(self) -> bool:
        return self in (PollOutcome.RETRY, PollOutcome.ERROR)


class Health:
    """What /healthz and /readyz report, updated by the loop."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last_beat = self.started
        self.loop_alive = True
        self.ready = False
        self.reason = "no poll yet"
        self._lock = threading.Lock()

    def beat(self) -> None:
        with self._lock:
            self.last_beat = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        with self._lock:
            self.ready, self.reason = ready, reason

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"alive": self.loop_alive, "ready": self.ready, "reason": self.reason,
                    "since_last_beat_seconds": round(time.monotonic() - self.last_beat, 3)}


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
        return self.source.tree_source(commit, self.settings.source.path, exclude)

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
        source = DirectorySource(self.root)
        if not source.root.is_dir():
            d = diag("G601", f"{self.root} is not a directory", hint="check --watch")
            event(logging.ERROR, "source unavailable", code=d.code, error=d.message)
            return PollOutcome.ERROR
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
                    step_ms: int = 300) -> threading.Thread:
    """A thread that wakes the loop when a YAML file (or .hiclawignore) under root changes."""
    from watchfiles import Change, DefaultFilter, watch

    class OrgFilter(DefaultFilter):
        def __call__(self, change: Change, path: str) -> bool:
            name = os.path.basename(path)
            return bool(super().__call__(change, path)) and (is_yaml(name) or name == ".hiclawignore")

    def run() -> None:
        for changes in watch(Path(root), watch_filter=OrgFilter(), stop_event=stop, step=step_ms, debounce=1600,
                             raise_interrupt=False):
            event(logging.INFO, "files changed", files=sorted(p for _, p in changes)[:20])
            wake.set()

    thread = threading.Thread(target=run, name="hiclaw-watch", daemon=True)
    thread.start()
    return thread


# The loop ------------------------------------------------------------------------------------------


def next_wait(interval: float, jitter: float, failures: int, backoff_max: float,
              rand: Callable[[], float] = random.random) -> float:
    """Seconds until the next poll: the interval ± jitter, doubled per consecutive failure up to backoff_max."""
    base = interval if failures == 0 else min(backoff_max, interval * (2 ** min(failures, 30)))
    spread = base * jitter
    return max(0.0, base + (rand() * 2 - 1) * spread)


class Daemon:
    """Runs polls until stopped: on a timer with jitter, on webhook or file-watch wake-ups, with backoff."""

    def __init__(
        self,
        poll: Callable[[], PollOutcome],
        *,
        interval: float,
        jitter: float = 0.1,
        backoff_max: float = 300.0,
        health: Health | None = None,
        stop: threading.Event | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        self.poll = poll
        self.interval = interval
        self.jitter = jitter
        self.backoff_max = backoff_max
        self.health = health or Health()
        self.stop = stop or threading.Event()
        self.wake = wake or threading.Event()
        self.failures = 0
        self.polls = 0

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None and not self.stop.is_set():
            event(logging.INFO, "stopping: the pass in flight finishes first", signal=signal.Signals(signum).name)
        self.stop.set()
        self.wake.set()

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the loop gracefully (only possible from the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def run(self, once: bool = False) -> int:
        """Poll until stopped (then 0); with once=True, exactly one poll: 0 if it succeeded, else 1."""
        outcome = PollOutcome.UNCHANGED
        try:
            while not self.stop.is_set():
                self.health.beat()
                self.wake.clear()
                outcome = self._poll()
                self.polls += 1
                self.failures = self.failures + 1 if outcome.failed else 0
                if once:
                    break
                wait = next_wait(self.interval, self.jitter, self.failures, self.backoff_max)
                if self.failures:
                    event(logging.INFO, "backing off", failures=self.failures, seconds=round(wait, 2))
                self.wake.wait(wait)
        finally:
            self.health.loop_alive = False
        event(logging.INFO, "stopped", polls=self.polls)
        return 1 if once and outcome.failed else 0

    def _poll(self) -> PollOutcome:
        try:
            return self.poll()
        except Exception as exc:  # keep the daemon alive; the next poll retries with backoff
            log.exception("poll failed", extra={"fields": {"error": REDACTOR.redact(str(exc))}})
            return PollOutcome.ERROR


# HTTP: health, readiness, metrics, webhook -----------------------------------------------------------


def verify_github_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """GitHub's X-Hub-Signature-256: `sha256=` + hex HMAC-SHA256 of the raw body, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


class HttpServer:
    """/healthz, /readyz, /metrics and POST /webhook, served from a thread; the loop is never blocked."""

    def __init__(
        self,
        listen: str,
        *,
        health: Health,
        metrics: Metrics,
        wake: threading.Event,
        webhook_secret: str | None = None,
        branch: str = "",
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.health, self.metrics, self.wake = health, metrics, wake
        self.secret = webhook_secret.encode() if webhook_secret else None
        self.branch = branch
        handler = self._handler()
        self.server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="hiclaw-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> HttpServer:
        self.thread.start()
        event(logging.INFO, "http endpoint listening", address=self.address, webhook=self.secret is not None)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "hiclaw-gitops"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                pass  # access logs would drown the reconciler's own lines

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, data: Mapping[str, Any]) -> None:
                self._send(code, (json.dumps(data) + "\n").encode())

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    snap = outer.health.snapshot()
                    self._json(200 if snap["alive"] else 503, snap)
                elif path == "/readyz":
                    snap = outer.health.snapshot()
                    self._json(200 if snap["ready"] and snap["alive"] else 503, snap)
                elif path == "/metrics":
                    self._send(200, outer.metrics.render(), CONTENT_TYPE)
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/webhook":
                    self._json(404, {"error": "not found"})
                    return
                if outer.secret is None:
                    outer.metrics.webhooks.labels("disabled").inc()
                    self._json(404, {"error": "webhook not configured (source.webhook_secret_env / _file)"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_WEBHOOK_BYTES:
                    outer.metrics.webhooks.labels("rejected").inc()
                    self._json(413, {"error": "payload too large"})
                    return
                body = self.rfile.read(length)
                if not verify_github_signature(outer.secret, body, self.headers.get("X-Hub-Signature-256")):
                    outer.metrics.webhooks.labels("unauthorized").inc()
                    event(logging.WARNING, "webhook refused: bad or missing signature",
                          client=self.client_address[0])
                    self._json(401, {"error": "bad signature"})
                    return
                if self.headers.get("X-GitHub-Event") == "ping":
                    outer.metrics.webhooks.labels("ping").inc()
                    self._json(200, {"pong": True})
                    return
                ref = _payload_ref(body)
                if ref and outer.branch and ref != f"refs/heads/{outer.branch}":
                    outer.metrics.webhooks.labels("ignored").inc()
                    self._json(202, {"queued": False, "reason": f"push to {ref}, not the followed branch"})
                    return
                outer.metrics.webhooks.labels("accepted").inc()
                outer.wake.set()
                self._json(202, {"queued": True})

        return Handler


def _payload_ref(body: bytes) -> str:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return ""
    ref = data.get("ref") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) else ""
