"""Status write-back: one commit per run, readable by people and machines, robust to racing pushes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from gitops.diagnostics import diag
from gitops.settings.load import REDACTOR
from gitops.settings.model import StatusSettings
from gitops.source.git import GitSource, GitSourceError
from gitops.status.model import (
    Condition,
    PassResult,
    ResourceStatus,
    Result,
    RunSummary,
    StatusSnapshot,
    merge,
)
from gitops.status.store import GitStatusStore

from .gitutil import GitDaemon, OrgRepo, worker


def snapshot(commit: str, result: str = "Validated", phase: str = "Pending", error: str = "") -> StatusSnapshot:
    summary = RunSummary(commit=commit, result=result, time="2026-01-01T00:00:00Z", message="valid",
                         diagnostics=(diag("S301", "unknown field `colour`", file="workers/a.yaml", line=7,
                                           column=3),))
    res = ResourceStatus("Worker", "alice", phase, observed_commit=commit, last_error=error,
                         matrix_user_id="@alice:example.com", rooms={"worker": "!room:example.com"},
                         container={"name": "hiclaw-worker-alice", "state": "running"},
                         conditions=(Condition("Valid", "True", "Validated"),))
    return StatusSnapshot(summary, {res.key: res})


def make_store(org: OrgRepo, tmp_path: Path, settings: StatusSettings | None = None, **kw: object) -> GitStatusStore:
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    return GitStatusStore(source, settings or StatusSettings(), **kw)  # type: ignore[arg-type]


def test_one_commit_with_trailers_files_and_a_readme(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    store = make_store(org, tmp_path)
    written = store.write(snapshot(tip))
    assert written is not None and org.log("hiclaw-status") == [written]
    message = org.message("hiclaw-status")
    assert f"Reconciled-Commit: {tip}" in message and "Hiclaw-Gitops-Status: true" in message
    alice = yaml.safe_load(org.show("hiclaw-status", "status/worker/alice.yaml"))
    assert alice["phase"] == "Pending" and alice["observedCommit"] == tip
    assert alice["rooms"] == {"worker": "!room:example.com"}
    readme = org.show("hiclaw-status", "status/README.md")
    assert "| Worker | alice | Pending |" in readme and "S301" in readme
    assert org.log("main") == [tip]  # the org branch is untouched
    back = store.read()
    assert back.resources["Worker/alice"] == snapshot(tip).resources["Worker/alice"]
    assert back.summary is not None and back.summary.diagnostics[0].line == 7


def test_a_second_run_adds_one_commit_and_removes_deleted_resources(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    store = make_store(org, tmp_path)
    first = store.write(snapshot(tip))
    second = store.write(StatusSnapshot(RunSummary(commit=tip, result="Validated", time="t2"), {}))
    assert org.log("hiclaw-status") == [second, first]
    assert org.bare_git("ls-tree", "-r", "--name-only", "hiclaw-status").split() == [
        "status/README.md", "status/summary.yaml"
    ]
    history = store.history()
    assert [h.status_commit for h in history] == [second, first]
    assert all(h.reconciled_commit == tip for h in history)


def test_no_secret_reaches_a_status_file_or_message(org: OrgRepo, tmp_path: Path) -> None:
    token = "ghp_9f8e7d6c5b4a39281706"
    REDACTOR.add(token)
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    store = make_store(org, tmp_path)
    snap = snapshot(tip, phase="Failed", error=f"login failed with token {token}")
    store.write(StatusSnapshot(RunSummary(commit=tip, result="Failed", message=f"auth {token}"), snap.resources))
    everything = org.bare_git("log", "-p", "hiclaw-status")
    assert token not in everything and "***" in everything


@pytest.mark.parametrize("fetched", [False, True], ids=["remote-tip-unknown", "remote-tip-fetched"])
def test_status_push_racing_a_user_push_is_retried(org: OrgRepo, tmp_path: Path, fetched: bool) -> None:
    """libgit2 surfaces 1 and 2: the branch moved between our fetch and our push."""
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    settings = StatusSettings(path=".hiclaw/status")  # same branch: status races the user's own pushes
    racer: list[str] = []

    def user_pushes(attempt: int) -> None:
        if attempt == 1:
            org.git("pull", "-q", "--rebase", "origin", "main", check=False)
            racer.append(org.commit_and_push("user", {"workers/bob.yaml": worker("bob")}))
            if fetched:
                store.source.fetch()

    store = make_store(org, tmp_path, settings, before_push=user_pushes, sleep=lambda s: None)
    written = store.write(snapshot(tip))
    assert store.attempts == 2
    surface = "non-fastforwardable" if fetched else "not present locally"
    assert len(store.rejections) == 1 and surface in store.rejections[0]
    assert org.log("main")[:2] == [written, racer[0]]  # rebuilt on top of the user's commit, nothing lost
    assert org.show("main", "workers/bob.yaml") == worker("bob").rstrip("\n")
    assert "Worker/alice" in store.read().resources


def test_server_side_rejection_is_seen_and_retried(daemon: GitDaemon, tmp_path: Path) -> None:
    """libgit2 surface 3: push() returns normally; only push_update_reference reports the refusal."""
    org = OrgRepo(tmp_path / "u", name="../served/org.git")
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    marker = tmp_path / "rejected-once"
    hook = org.bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nif [ ! -e {marker} ]; then touch {marker}; echo 'busy, retry' >&2; exit 1; fi\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    source = GitSource(daemon.url("org.git"), "main", tmp_path / "cache")
    source.fetch()
    store = GitStatusStore(source, StatusSettings(), sleep=lambda s: None)
    written = store.write(snapshot(tip))
    assert marker.exists() and store.attempts == 2
    assert store.rejections == ["rejected by the server: pre-receive hook declined"]
    assert org.log("hiclaw-status") == [written]


def test_a_permanent_rejection_ends_with_a_diagnostic(daemon: GitDaemon, tmp_path: Path) -> None:
    org = OrgRepo(tmp_path / "u", name="../served/org.git")
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    hook = org.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    source = GitSource(daemon.url("org.git"), "main", tmp_path / "cache")
    source.fetch()
    store = GitStatusStore(source, StatusSettings(push_retries=2), sleep=lambda s: None)
    with pytest.raises(GitSourceError) as exc:
        store.write(snapshot(tip))
    assert exc.value.diagnostic.code == "G608"
    assert "after 3 attempts" in exc.value.diagnostic.message and "declined" in exc.value.diagnostic.message
    assert org.log("hiclaw-status") == []


def test_merge_counts_failures_to_degraded_and_keeps_state_on_invalid_commits() -> None:
    prev = StatusSnapshot()
    failing = PassResult(Result.FAILED, resources=(ResourceStatus("Worker", "alice", "Failed", last_error="boom"),))
    for n in (1, 2, 3):
        prev = merge(prev, failing, RunSummary(commit="c1", result="Failed"), degraded_after=3)
        assert prev.resources["Worker/alice"].failures == n
    assert prev.resources["Worker/alice"].phase == "Degraded"
    ok = PassResult(Result.VALIDATED, resources=(ResourceStatus("Worker", "alice", "Pending", observed_commit="c2"),))
    good = merge(prev, ok, RunSummary(commit="c2", result="Validated"), degraded_after=3)
    assert good.resources["Worker/alice"].failures == 0
    invalid = PassResult(Result.INVALID, resources=(
        ResourceStatus("Worker", "bob", "Invalid", last_error="bad"),
    ))
    after = merge(good, invalid, RunSummary(commit="c3", result="Invalid"), degraded_after=3)
    alice = after.resources["Worker/alice"]
    assert alice.phase == "Pending" and alice.observed_commit == "c2"  # the last good state stays in force
    assert alice.condition("Reconciled") == Condition("Reconciled", "False", "InvalidCommit",
                                                      "commit c3 is invalid; nothing was applied")
    assert after.resources["Worker/bob"].phase == "Invalid"
