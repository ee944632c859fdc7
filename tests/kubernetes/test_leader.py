"""Leader election on a coordination.k8s.io Lease: several daemons, exactly one active; a standby takes over
within the lease duration; a paused leader that wakes after losing the lease does not write; /readyz says
whether this replica leads."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubeharness import KubeEnv

from backends.kubernetes_api import KubeApi
from backends.kubernetes_lease import KubeLeaseStore
from gitops.daemon.health import Health
from gitops.daemon.leader import LeaderElector, LeaseConflict, NotLeading, Timing, may_write
from gitops.daemon.metrics import Metrics
from gitops.daemon.pollers import PollOutcome
from gitops.daemon.runner import Daemon
from gitops.daemon.server import HttpServer
from gitops.providers.conformance import secret_resolver

FAST = Timing(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lease_name(kube_env: KubeEnv) -> Iterator[str]:
    name = f"hiclaw-gitops-{kube_env.session}"
    yield name
    if kube_env.raw.get("Lease", kube_env.namespace, name) is not None:
        kube_env.raw.delete("Lease", kube_env.namespace, name)


def _elector(env: KubeEnv, lease: str, identity: str, clock: Clock | None = None) -> LeaderElector:
    store = KubeLeaseStore(lease, env.namespace, KubeApi())
    return LeaderElector(store, identity, FAST, monotonic=clock or time.monotonic)


def test_two_daemons_one_active_and_failover(kube_env: KubeEnv, lease_name: str) -> None:
    polls: dict[str, list[float]] = {"a": [], "b": []}
    electors = {n: _elector(kube_env, lease_name, f"pod-{n}") for n in polls}

    def poller(n: str) -> Callable[[], PollOutcome]:
        def poll() -> PollOutcome:
            polls[n].append(time.monotonic())
            return PollOutcome.UNCHANGED
        return poll

    daemons = {n: Daemon(poller(n), interval=0.05, jitter=0.0, leader=electors[n]) for n in polls}
    threads = {n: threading.Thread(target=daemons[n].run, daemon=True) for n in polls}
    for n in polls:
        electors[n].start()
        threads[n].start()
    try:
        time.sleep(1.5)
        active = [n for n in polls if polls[n]]
        assert len(active) == 1, f"active daemons: {active}"
        leader = active[0]
        standby = "b" if leader == "a" else "a"
        assert electors[leader].leading() and not electors[standby].leading()
        assert daemons[standby].health.snapshot()["leader"] is False
        # The leader's process dies: no release, the lease has to expire.
        stopped_at = time.monotonic()
        daemons[leader].request_stop()
        electors[leader].stop(release=False)
        threads[leader].join(timeout=5)
        deadline = stopped_at + FAST.lease_duration + 5 * FAST.retry_period
        while not polls[standby] and time.monotonic() < deadline + 2:
            time.sleep(0.02)
        assert polls[standby], "the standby never took over"
        took = polls[standby][0] - stopped_at
        assert took <= FAST.lease_duration + 5 * FAST.retry_period, f"took over after {took:.2f}s"
        assert not polls[leader] or polls[leader][-1] <= stopped_at + 0.1
        assert daemons[standby].health.snapshot()["leader"] is True
    finally:
        for n in polls:
            daemons[n].request_stop()
            electors[n].stop()
            threads[n].join(timeout=5)
            electors[n].store.close()  # type: ignore[attr-defined]


def test_release_on_stop_hands_over_at_once(kube_env: KubeEnv, lease_name: str) -> None:
    a, b = _elector(kube_env, lease_name, "pod-a"), _elector(kube_env, lease_name, "pod-b")
    try:
        assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
        a.stop(release=True)
        assert b.try_acquire_or_renew(), "a released lease is free at once"
    finally:
        a.stop()
        b.stop()


def test_paused_leader_that_lost_the_lease_does_not_write(kube_env: KubeEnv, lease_name: str) -> None:
    clock_a, clock_b = Clock(), Clock()
    a, b = _elector(kube_env, lease_name, "pod-a", clock_a), _elector(kube_env, lease_name, "pod-b", clock_b)
    backend = kube_env.backend()
    try:
        assert a.try_acquire_or_renew()
        a.install_fence()
        assert not b.try_acquire_or_renew()
        assert may_write()
        # a is paused: it neither renews nor notices time passing; b watches the record stay unchanged.
        for _ in range(12):
            clock_a.now += 0.1
            clock_b.now += 0.1
            b.try_acquire_or_renew()
        assert b.leading(), "the standby did not take over an expired lease"
        # a wakes: before talking to the store it already knows it may not write...
        assert not a.leading() and not may_write()
        writes = len(kube_env.cluster.writes()) if kube_env.cluster is not None else 0
        with pytest.raises(NotLeading):
            backend.apply(kube_env.desired("fenced"), "create", None, secret_resolver())
        if kube_env.cluster is not None:
            assert len(kube_env.cluster.writes()) == writes, "a fenced backend wrote"
        # ...and its next round finds the lease taken.
        assert not a.try_acquire_or_renew()
        lease = kube_env.raw.get("Lease", kube_env.namespace, lease_name)
        assert lease is not None and lease["spec"]["holderIdentity"] == "pod-b"
        assert lease["spec"]["leaseTransitions"] == 1
    finally:
        a.stop(release=False)
        b.stop(release=False)
        backend.close()


def test_a_stale_write_to_the_lease_is_refused(kube_env: KubeEnv, lease_name: str) -> None:
    a, b = _elector(kube_env, lease_name, "pod-a"), _elector(kube_env, lease_name, "pod-b")
    try:
        assert a.try_acquire_or_renew()
        record = b.store.get()
        assert record is not None
        assert a.try_acquire_or_renew()  # a renews: the version b read is now stale
        with pytest.raises(LeaseConflict):
            b.store.update(dataclasses.replace(record, holder="pod-b"))
    finally:
        a.stop(release=False)
        b.stop(release=False)


def test_readyz_says_whether_this_replica_leads() -> None:
    class Fixed:
        def __init__(self, leading: bool) -> None:
            self.value = leading

        def leading(self) -> bool:
            return self.value

    def status(server: HttpServer) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://{server.address}/readyz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    for leading, code in ((False, 503), (True, 200)):
        health = Health()
        flag = Fixed(leading)

        def poll(h: Health = health) -> PollOutcome:
            h.set_ready(True)
            return PollOutcome.UNCHANGED

        daemon = Daemon(poll, interval=0.01, leader=flag, health=health)
        t = threading.Thread(target=daemon.run, daemon=True)
        t.start()
        server = HttpServer("127.0.0.1:0", health=health, metrics=Metrics(), wake=threading.Event()).start()
        try:
            time.sleep(0.2)
            got, body = status(server)
            assert (got, body["leader"]) == (code, leading)
        finally:
            daemon.request_stop()
            t.join(timeout=5)
            server.stop()


def test_elector_from_settings(kube_env: KubeEnv) -> None:
    from gitops.daemon.leader import elector_from_settings
    from gitops.settings.model import LeaderElectionSettings, Settings

    assert elector_from_settings(Settings()) is None
    settings = Settings(runtime=kube_env.settings(), leader_election=LeaderElectionSettings(enabled=True))
    elector = elector_from_settings(settings, {"POD_NAME": "hiclaw-gitops-0", "POD_NAMESPACE": kube_env.namespace})
    assert elector is not None and elector.identity == "hiclaw-gitops-0"
    try:
        assert elector.try_acquire_or_renew()
    finally:
        elector.stop()
        elector.store.close()  # type: ignore[attr-defined]
    bad = Settings(leader_election=LeaderElectionSettings(enabled=True, renew_deadline=20.0))
    with pytest.raises(ValueError, match="renew_deadline"):
        elector_from_settings(bad, {"POD_NAME": "x"})


def test_run_campaigns_for_the_lease_and_reconciles_as_leader(kube_env: KubeEnv, lease_name: str,
                                                               tmp_path: Path) -> None:
    """`hiclaw-gitops run` with leader_election on: it takes the Lease under its identity, reconciles as the
    leader, and hands the Lease back when it stops."""
    import os
    import subprocess
    import sys

    import yaml

    org = tmp_path / "org"
    org.mkdir()
    (org / "alice.yaml").write_text("apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata: {name: alice}\n"
                                    "spec: {model: qwen3.6-plus}\n")
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "leader_election": {"enabled": True, "lease_name": lease_name, "namespace": kube_env.namespace,
                            "identity": "replica-a"},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HICLAW_GITOPS_")}
    done = subprocess.run([sys.executable, "-m", "gitops", "run", "--once", "--watch", str(org), "--settings",
                           str(settings)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lease = kube_env.raw.get("Lease", kube_env.namespace, lease_name)
    assert lease is not None, "the daemon never took the Lease"
    spec = lease.get("spec") or {}
    assert spec.get("holderIdentity") in ("", None)  # released on stop: a standby takes over at once
    assert any((tmp_path / "state" / "status").rglob("*.yaml")), "no pass was reconciled and recorded"
