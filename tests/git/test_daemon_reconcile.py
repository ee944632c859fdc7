"""The daemon applies for real when a provider is configured: commit → plan → apply → verify → status."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from gitops.daemon.pollers import PollOutcome
from gitops.providers.protocol import Scope
from gitops.settings.model import DriftSettings, RuntimeSettings

from .gitutil import OrgRepo, worker
from .harness import make_poller, settings_for


def status_of(org: OrgRepo, path: str) -> dict:  # type: ignore[type-arg]
    data = yaml.safe_load(org.show("hiclaw-status", path))
    assert isinstance(data, dict)
    return data


def test_commits_are_applied_and_status_says_so(org: OrgRepo, tmp_path: Path) -> None:
    settings = replace(settings_for(org.url, tmp_path / "state"), runtime=RuntimeSettings(backend="memory"))
    poller, _ = make_poller(settings)
    backend = poller.reconciler.pass_fn.backends  # type: ignore[attr-defined]
    runtime = next(iter(backend.values()))

    first = org.commit_and_push("alice", {"workers/alice.yaml": worker("alice")})
    assert poller.poll() is PollOutcome.PROCESSED
    summary = status_of(org, "status/summary.yaml")
    assert (summary["commit"], summary["result"]) == (first, "Reconciled")
    alice = status_of(org, "status/worker/alice.yaml")
    assert alice["phase"] == "Ready"
    assert {c["type"]: c["reason"] for c in alice["conditions"]} == {"Valid": "Validated", "Applied": "Applied"}
    assert set(runtime.observe(Scope({}))) == {"runtime/container/hiclaw-worker-alice"}

    second = org.commit_and_push("bob, alice sleeps", {
        "workers/bob.yaml": worker("bob"),
        "workers/alice.yaml": worker("alice").replace("spec:\n", "spec:\n  state: Sleeping\n"),
    })
    assert poller.poll() is PollOutcome.PROCESSED
    assert status_of(org, "status/summary.yaml")["commit"] == second
    assert status_of(org, "status/summary.yaml")["result"] == "Reconciled"
    seen = set(runtime.observe(Scope({})))
    assert seen == {"runtime/container/hiclaw-worker-alice", "runtime/container/hiclaw-worker-bob"}
    assert runtime.observe(Scope({}))["runtime/container/hiclaw-worker-alice"].spec["state"] == "Sleeping"

    writes = runtime.write_calls
    assert poller.poll() is PollOutcome.UNCHANGED  # nothing new: no pass, no write
    assert runtime.write_calls == writes and len(org.log("hiclaw-status")) == 2


def test_a_stopped_agent_converges_to_no_container(org: OrgRepo, tmp_path: Path) -> None:
    settings = replace(settings_for(org.url, tmp_path / "state"), runtime=RuntimeSettings(backend="memory"))
    poller, _ = make_poller(settings)
    runtime = next(iter(poller.reconciler.pass_fn.backends.values()))  # type: ignore[attr-defined]
    org.commit_and_push("alice", {"workers/alice.yaml": worker("alice")})
    assert poller.poll() is PollOutcome.PROCESSED
    org.commit_and_push("alice stops", {
        "workers/alice.yaml": worker("alice").replace("spec:\n", "spec:\n  state: Stopped\n"),
    })
    assert poller.poll() is PollOutcome.PROCESSED
    assert status_of(org, "status/summary.yaml")["result"] == "Reconciled"  # verify accepts the absence
    # the reference backend keeps a record in state Stopped; Docker removes the container (absent by design)
    assert [o.spec["state"] for o in runtime.observe(Scope({})).values()] == ["Stopped"]
    # the next pass over the same commit plans nothing: absence is what was applied
    tip = poller.source.tip()
    assert tip is not None
    result = poller.reconciler.pass_fn(poller.source.tree_source(tip), "again")
    assert result.plan is not None
    assert result.plan["counts"] == {"create": 0, "update": 0, "replace": 0, "delete": 0}


def test_drift_every_n_polls_is_reported_then_healed(org: OrgRepo, tmp_path: Path) -> None:
    base = replace(settings_for(org.url, tmp_path / "state"), runtime=RuntimeSettings(backend="memory"))
    settings = replace(base, drift=DriftSettings(every_polls=2, mode="report"))
    poller, _ = make_poller(settings)
    runtime = next(iter(poller.reconciler.pass_fn.backends.values()))  # type: ignore[attr-defined]
    org.commit_and_push("alice", {"workers/alice.yaml": worker("alice")})
    assert poller.poll() is PollOutcome.PROCESSED
    runtime.objects.clear()  # someone removed the container behind our back
    assert poller.poll() is PollOutcome.UNCHANGED  # poll 1: no check yet, nothing written
    writes = runtime.write_calls
    assert poller.poll() is PollOutcome.UNCHANGED  # poll 2: checked, reported, not healed
    assert runtime.write_calls == writes and runtime.observe(Scope({})) == {}
    text = poller.metrics.render().decode()
    assert "hiclaw_gitops_drift_changes 1.0" in text
    assert 'hiclaw_gitops_drift_checks_total{result="drift"} 1.0' in text

    poller.settings = replace(settings, drift=DriftSettings(every_polls=2, mode="heal"))
    assert poller.poll() is PollOutcome.UNCHANGED
    assert poller.poll() is PollOutcome.PROCESSED  # healed: the commit reconciled again
    assert set(runtime.observe(Scope({}))) == {"runtime/container/hiclaw-worker-alice"}
    assert len(org.log("hiclaw-status")) == 2
