"""The daemon loop in-process: one status commit per processed commit, nothing when nothing changed."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
from pathlib import Path

import pytest
import yaml

from gitops.daemon.lock import LockHeld, StateLock
from gitops.daemon.logs import configure_logging
from gitops.daemon.loopstate import LoopState
from gitops.daemon.metrics import Metrics
from gitops.daemon.notify import EscalationTracker
from gitops.daemon.passes import default_pass
from gitops.daemon.pollers import DirectoryPoller, PollOutcome, watch_directory
from gitops.daemon.reconciler import Reconciler
from gitops.daemon.runner import Daemon, next_wait
from gitops.settings.load import REDACTOR
from gitops.settings.model import NotifySettings, Settings, StatusSettings
from gitops.source.files import FileSource
from gitops.status.model import PassResult, ResourceStatus, Result
from gitops.status.store import DirectoryStatusStore

from .gitutil import INVALID_WORKER, GitDaemon, OrgRepo, wait_for, worker
from .harness import ListNotifier, make_poller, settings_for


def status_of(org: OrgRepo, path: str, ref: str = "hiclaw-status") -> dict:  # type: ignore[type-arg]
    data = yaml.safe_load(org.show(ref, path))
    assert isinstance(data, dict)
    return data


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def tree_listing(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_valid_invalid_fixed_then_nothing(org: OrgRepo, tmp_path: Path) -> None:
    settings = settings_for(org.url, tmp_path / "state")
    poller, _ = make_poller(settings)
    metrics = poller.metrics

    valid = org.commit_and_push("valid", {"workers/alice.yaml": worker("alice")})
    assert poller.poll() is PollOutcome.PROCESSED
    assert len(org.log("hiclaw-status")) == 1
    assert status_of(org, "status/summary.yaml")["result"] == "Validated"
    alice = status_of(org, "status/worker/alice.yaml")
    assert alice["phase"] == "Pending" and alice["observedCommit"] == valid
    assert {c["type"]: c["reason"] for c in alice["conditions"]} == {"Valid": "Validated",
                                                                      "Applied": "NoProvider"}
    text = metrics.render().decode()
    assert metric(text, 'hiclaw_gitops_reconciles_total{result="Validated"}') == 1
    assert metric(text, 'hiclaw_gitops_resources{kind="Worker",phase="Pending"}') == 1
    assert f'hiclaw_gitops_last_reconciled_commit_info{{commit="{valid}",result="Validated"}} 1.0' in text

    invalid = org.commit_and_push("invalid", {"workers/alice.yaml": INVALID_WORKER})
    assert poller.poll() is PollOutcome.PROCESSED
    assert len(org.log("hiclaw-status")) == 2
    summary = status_of(org, "status/summary.yaml")
    assert summary["commit"] == invalid and summary["result"] == "Invalid"
    assert summary["lastGoodCommit"] == valid
    assert [(d["code"], d["file"], d["line"]) for d in summary["diagnostics"]] == [
        ("S303", "workers/alice.yaml", 6), ("S301", "workers/alice.yaml", 7)
    ]
    alice = status_of(org, "status/worker/alice.yaml")
    assert alice["phase"] == "Pending" and alice["observedCommit"] == valid  # nothing applied
    valid_cond = next(c for c in alice["conditions"] if c["type"] == "Valid")
    assert valid_cond["status"] == "False" and "S303" in valid_cond["message"]
    assert "S303" in org.show("hiclaw-status", "status/README.md")
    text = metrics.render().decode()
    assert metric(text, 'hiclaw_gitops_reconciles_total{result="Invalid"}') == 1

    fixed = org.commit_and_push("fixed", {"workers/alice.yaml": worker("alice", model="gpt-5"),
                                          "workers/bob.yaml": worker("bob")})
    assert poller.poll() is PollOutcome.PROCESSED
    assert len(org.log("hiclaw-status")) == 3
    summary = status_of(org, "status/summary.yaml")
    assert (summary["commit"], summary["result"], summary["diagnostics"]) == (fixed, "Validated", [])
    assert status_of(org, "status/worker/bob.yaml")["phase"] == "Pending"
    assert [e.reconciled_commit for e in poller.store.history()] == [fixed, invalid, valid]  # type: ignore[union-attr]

    # Nothing new: one round trip, no fetch, no write anywhere.
    state_dir = tmp_path / "state"
    before = tree_listing(state_dir)
    status_before = org.log("hiclaw-status")
    assert poller.poll() is PollOutcome.UNCHANGED
    assert tree_listing(state_dir) == before
    assert org.log("hiclaw-status") == status_before
    text = metrics.render().decode()
    assert metric(text, 'hiclaw_gitops_polls_total{outcome="unchanged"}') == 1
    assert metric(text, 'hiclaw_gitops_reconciles_total{result="Validated"}') == 2


def test_restart_resumes_from_the_state_and_the_status_branch(org: OrgRepo, tmp_path: Path) -> None:
    org.commit_and_push("valid", {"workers/alice.yaml": worker("alice")})
    settings = settings_for(org.url, tmp_path / "state")
    first, _ = make_poller(settings)
    assert first.poll() is PollOutcome.PROCESSED
    again, _ = make_poller(settings)
    assert again.poll() is PollOutcome.UNCHANGED
    # Even with the local state lost, the status branch's trailer says what was reconciled.
    (tmp_path / "state" / "loop.json").unlink()
    fresh, _ = make_poller(settings)
    assert fresh.state.last_commit == org.tip()
    assert fresh.poll() is PollOutcome.SEEN
    assert len(org.log("hiclaw-status")) == 1


def test_status_on_the_same_branch_never_triggers_a_pass(org: OrgRepo, tmp_path: Path) -> None:
    org.commit_and_push("valid", {"org/workers/alice.yaml": worker("alice")})
    settings = settings_for(org.url, tmp_path / "state", status=StatusSettings(path="org/.status"), path="org")
    poller, _ = make_poller(settings)
    assert poller.poll() is PollOutcome.PROCESSED
    own = org.tip()
    assert own is not None and "Hiclaw-Gitops-Status: true" in org.message(own)
    assert poller.poll() is PollOutcome.UNCHANGED  # its own commit is the head: nothing to do
    assert org.tip() == own
    org.git("pull", "-q", "--rebase", "origin", "main")
    user = org.commit_and_push("user", {"org/workers/bob.yaml": worker("bob")})
    assert poller.poll() is PollOutcome.PROCESSED
    summary = status_of(org, "org/.status/summary.yaml", ref="main")
    assert summary["commit"] == user and summary["result"] == "Validated"  # status files are not org input
    assert poller.poll() is PollOutcome.UNCHANGED
    assert len([c for c in org.log("main") if "Hiclaw-Gitops-Status" in org.message(c)]) == 2


def test_a_shallow_daemon_over_the_git_protocol(daemon: GitDaemon, tmp_path: Path) -> None:
    org = OrgRepo(tmp_path / "u", name="../served/org.git")
    org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    org.commit_and_push("two", {"workers/bob.yaml": worker("bob")})
    poller, _ = make_poller(settings_for(daemon.url("org.git"), tmp_path / "state", depth=1))
    assert poller.poll() is PollOutcome.PROCESSED
    assert poller.source.repo.is_shallow
    third = org.commit_and_push("three", {"workers/carol.yaml": worker("carol")})
    assert poller.poll() is PollOutcome.PROCESSED  # fetched shallow, status pushed from a shallow cache
    assert poller.poll() is PollOutcome.UNCHANGED
    assert len(org.log("hiclaw-status")) == 2
    summary = status_of(org, "status/summary.yaml")
    assert summary["commit"] == third and summary["phases"] == {"Pending": 3}


def test_force_push_is_reported_or_refused(org: OrgRepo, tmp_path: Path) -> None:
    first = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    org.commit_and_push("two", {"workers/bob.yaml": worker("bob")})
    settings = settings_for(org.url, tmp_path / "state")
    poller, _ = make_poller(settings)
    assert poller.poll() is PollOutcome.PROCESSED
    org.git("reset", "-q", "--hard", first)
    rewritten = org.commit("rewritten", {"workers/carol.yaml": worker("carol")})
    org.push(force=True)
    assert poller.poll() is PollOutcome.PROCESSED
    summary = status_of(org, "status/summary.yaml")
    assert summary["result"] == "Validated" and summary["forcePush"]["new"] == rewritten
    assert [d["code"] for d in summary["diagnostics"]] == ["G605"]
    assert metric(poller.metrics.render().decode(), "hiclaw_gitops_force_pushes_total") == 1

    strict = settings_for(org.url, tmp_path / "state2", allow_force_push=False)
    guarded, _ = make_poller(strict)
    assert guarded.poll() is PollOutcome.SEEN  # a new state dir resumes from the status branch's trailer
    org.git("reset", "-q", "--hard", first)
    again = org.commit("rewritten again", {"workers/dave.yaml": worker("dave")})
    org.push(force=True)
    assert guarded.poll() is PollOutcome.PROCESSED
    summary = status_of(org, "status/summary.yaml")
    assert (summary["commit"], summary["result"]) == (again, "Refused")
    assert [d["code"] for d in summary["diagnostics"]] == ["G605", "G610"]


def test_unreachable_remote_backs_off_escalates_once_and_recovers(org: OrgRepo, tmp_path: Path) -> None:
    org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    settings = settings_for(org.url, tmp_path / "state")
    settings = Settings(source=settings.source, state_dir=settings.state_dir, notify=NotifySettings(after_failures=2))
    poller, notifier = make_poller(settings)
    moved = org.bare.with_name("moved.git")
    org.bare.rename(moved)
    outcomes = [poller.poll() for _ in range(4)]
    assert outcomes == [PollOutcome.ERROR] * 4
    assert [(m.kind, m.resource, m.attempts) for m in notifier.sent] == [("failure", "hiclaw-gitops/source", 2)]
    assert "G601" not in notifier.sent[0].text() and "no repository at" in notifier.sent[0].error
    text = poller.metrics.render().decode()
    assert metric(text, 'hiclaw_gitops_polls_total{outcome="error"}') == 4
    assert metric(text, "hiclaw_gitops_ready") == 0
    moved.rename(org.bare)
    assert poller.poll() is PollOutcome.PROCESSED
    assert [m.kind for m in notifier.sent] == ["failure", "recovery"]
    assert metric(poller.metrics.render().decode(), "hiclaw_gitops_ready") == 1


def failing_pass(errors: list[str]) -> object:
    """A pass whose resource fails with the next error in the list ('' = succeeds)."""
    def run(source: FileSource, commit: str) -> PassResult:
        error = errors.pop(0)
        phase = "Failed" if error else "Ready"
        res = ResourceStatus("Worker", "alice", phase, observed_commit=commit, last_error=error)
        return PassResult(Result.FAILED if error else Result.RECONCILED, resources=(res,),
                          provider_failures={"runtime": 1} if error else {})
    return run


def test_a_failing_resource_is_retried_degraded_and_escalated_once(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    base = settings_for(org.url, tmp_path / "state")
    settings = Settings(source=base.source, state_dir=base.state_dir, notify=NotifySettings(after_failures=3))
    errors = ["container exited 1", "container exited 1", "container exited 137", "container exited 9", ""]
    poller, notifier = make_poller(settings, pass_fn=failing_pass(errors))  # type: ignore[arg-type]
    phases = []
    for _ in range(5):  # the head never moves: failed passes are retried on the same commit
        poller.poll()
        phases.append(status_of(org, "status/worker/alice.yaml")["phase"])
    assert phases == ["Failed", "Failed", "Degraded", "Degraded", "Ready"]
    assert len(org.log("hiclaw-status")) == 5
    assert [(m.kind, m.resource, m.commit, m.attempts) for m in notifier.sent] == [
        ("failure", "Worker/alice", tip, 3), ("recovery", "Worker/alice", tip, 0)
    ]  # exit 1 / 137 / 9 are one failure with different numbers: one message
    text = notifier.sent[0].text()
    for field in ("Resource: Worker/alice", f"Commit: {tip[:12]}", "Error: container exited", "Attempts: 3",
                  "What to do:"):
        assert field in text
    metrics = poller.metrics.render().decode()
    assert metric(metrics, 'hiclaw_gitops_provider_failures_total{provider="runtime"}') == 4
    assert metric(metrics, "hiclaw_gitops_degraded_resources") == 0
    assert poller.poll() is PollOutcome.UNCHANGED


def test_a_crashing_pass_is_reported_and_never_leaks_a_secret(org: OrgRepo, tmp_path: Path) -> None:
    token = "tok-4c1d2e3f5a6b7c8d"
    REDACTOR.add(token)  # as resolve_secret does for every secret it reads
    stream = io.StringIO()
    configure_logging("json", stream)
    try:
        org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})

        def crash(source: FileSource, commit: str) -> PassResult:
            raise RuntimeError(f"backend refused token {token}")

        poller, notifier = make_poller(settings_for(org.url, tmp_path / "state"), pass_fn=crash)
        assert [poller.poll() for _ in range(4)] == [PollOutcome.RETRY] * 4  # retried on the same commit
    finally:
        logging.getLogger("hiclaw_gitops").handlers.clear()
    summary = status_of(org, "status/summary.yaml")
    assert summary["result"] == "Failed" and summary["diagnostics"][0]["code"] == "G612"
    assert [(m.kind, m.resource, m.attempts) for m in notifier.sent] == [("failure", "hiclaw-gitops/pass", 3)]
    assert token not in notifier.sent[0].text()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {"time", "level", "logger", "msg"} <= set(lines[0])
    assert any(line["msg"] == "pass crashed" for line in lines)
    everything = stream.getvalue() + org.bare_git("log", "-p", "hiclaw-status")
    assert token not in everything and "***" in everything


def test_sigterm_mid_pass_finishes_the_pass_then_exits(org: OrgRepo, tmp_path: Path) -> None:
    org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    settings = settings_for(org.url, tmp_path / "state")
    inner = default_pass(settings)
    seen: list[str] = []

    def pass_with_signal(source: FileSource, commit: str) -> PassResult:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the pass
        seen.append(commit)
        return inner(source, commit)

    poller, _ = make_poller(settings, pass_fn=pass_with_signal)
    daemon = Daemon(poller.poll, interval=3600)
    previous = signal.getsignal(signal.SIGTERM)
    with daemon.signals():
        code = daemon.run()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert code == 0 and daemon.polls == 1 and len(seen) == 1
    assert status_of(org, "status/summary.yaml")["result"] == "Validated"  # the pass in flight completed
    assert LoopState.load(tmp_path / "state" / "loop.json").last_commit == seen[0]


def test_one_daemon_per_state_directory(tmp_path: Path) -> None:
    with StateLock(tmp_path / "state"):
        with pytest.raises(LockHeld) as exc:
            StateLock(tmp_path / "state").acquire()
        assert f"pid {os.getpid()}" in str(exc.value)
    with StateLock(tmp_path / "state"):  # released: the next one may start
        pass


def test_backoff_grows_with_failures_and_is_bounded() -> None:
    mid = lambda: 0.5  # noqa: E731 - no jitter at the midpoint
    assert next_wait(30, 0.1, 0, 300, mid) == 30
    assert next_wait(30, 0.1, 1, 300, mid) == 60
    assert next_wait(30, 0.1, 3, 300, mid) == 240
    assert next_wait(30, 0.1, 10, 300, mid) == 300
    assert 27 <= next_wait(30, 0.1, 0, 300) <= 33
    outcomes = iter([PollOutcome.ERROR, PollOutcome.ERROR, PollOutcome.PROCESSED])
    failures: list[int] = []
    daemon = Daemon(lambda: next(outcomes), interval=0.001, jitter=0, backoff_max=0.01)

    def poll() -> PollOutcome:
        failures.append(daemon.failures)
        outcome = next(outcomes, None)
        if outcome is None:
            daemon.request_stop()
            return PollOutcome.UNCHANGED
        return outcome

    daemon.poll = poll
    assert daemon.run() == 0
    assert failures == [0, 1, 2, 0]


def test_watch_mode_reconciles_a_directory_when_files_change(tmp_path: Path) -> None:
    org_dir = tmp_path / "org"
    (org_dir / "workers").mkdir(parents=True)
    (org_dir / "workers" / "alice.yaml").write_text(worker("alice"))
    settings = Settings(state_dir=str(tmp_path / "state"))
    store = DirectoryStatusStore(tmp_path / "state" / "status")
    reconciler = Reconciler(settings, default_pass(settings), store=store, metrics=Metrics(),
                            tracker=EscalationTracker(ListNotifier(), 3), state=LoopState(), state_path=None)
    poller = DirectoryPoller(org_dir, reconciler, store)
    assert poller.poll() is PollOutcome.PROCESSED
    assert poller.poll() is PollOutcome.UNCHANGED
    wake, stop, ready = threading.Event(), threading.Event(), threading.Event()
    thread = watch_directory(org_dir, wake, stop, step_ms=50, ready=ready)
    try:
        wait_for(ready.is_set, timeout=10, what="the watcher to start watching")
        (org_dir / "notes.txt").write_text("ignored: not YAML")
        (org_dir / "workers" / "bob.yaml").write_text(worker("bob"))
        wait_for(wake.is_set, timeout=10, what="the watcher to see bob.yaml")
    finally:
        stop.set()
        thread.join(5)
    assert poller.poll() is PollOutcome.PROCESSED
    snapshot = store.read()
    assert sorted(snapshot.resources) == ["Worker/alice", "Worker/bob"]
    assert snapshot.summary is not None and snapshot.summary.commit.startswith("dir:")
