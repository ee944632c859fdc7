"""Failover of `hiclaw-gitops run` between two real daemon processes that share no disk: separate state
directories, one (fake) cluster, one gateway console (the contract fake of tests/gateway) and one git
repository holding example-org. Settings as in deploy/kubernetes/ha: leader election, the Kubernetes secret
store, state replication.

- The leader reconciles example-org and publishes its state; it is killed; the standby takes the Lease over,
  restores the state before its first pass, and its pass of the next commit writes nothing to the cluster or
  the console and issues no credential again.
- The leader is paused (SIGSTOP) in the middle of a pass, past the lease; the standby takes over and converges;
  the leader, woken, writes nothing more to any provider and records no status.

Each daemon talks to the fake API server with a token of its own, so every call is attributed. Credential
values are compared by digest, never printed. Fake only: these tests stop processes and hold calls.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fakeapi import FakeApiServer

from gitops.apply.state import StateStore
from gitops.daemon.loopstate import LoopState

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example-org"
NAMESPACE, INSTANCE, LEASE = "hiclaw", "hiclaw-gitops", "hiclaw-gitops"
TIMING = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.4}
ROUTES = [{"name": "qwen", "models": ["qwen3.6-plus"]}, {"name": "claude", "models": ["claude-sonnet-4-6"]}]
STATE_CHUNK = f"{INSTANCE}-state-"


def _fake_higress() -> Any:
    """The gateway console's contract fake, loaded from its file (tests/gateway is another test folder)."""
    spec = importlib.util.spec_from_file_location("fake_higress_for_failover",
                                                  ROOT / "tests" / "gateway" / "fake_higress.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.FakeHigress()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def settle(count: Callable[[], int], quiet: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until `count()` has not moved for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = count()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = count()
        if now == last:
            return
        last = now
    raise AssertionError("the writes never settled")


class Repo:
    """A bare repository (the daemons' remote) and a work tree that commits example-org to it."""

    def __init__(self, root: Path) -> None:
        self.bare, self.work = root / "org.git", root / "work"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "HOME": str(root),
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
                    "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare))
        shutil.copytree(EXAMPLE, self.work)
        self.git("init", "-q", "-b", "main", cwd=self.work)
        self.git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self.commit("example-org")

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A", cwd=self.work)
        self.git("commit", "-q", "-m", message, cwd=self.work)
        self.git("push", "-q", "origin", "main", cwd=self.work)
        return self.git("rev-parse", "HEAD", cwd=self.work)


class Replica:
    """One `hiclaw-gitops run` process with its own state directory, identity and API token."""

    def __init__(self, name: str, root: Path, server: FakeApiServer, repo: Repo, console: Any) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.state = self.dir / "state"
        self.log = self.dir / "daemon.log"
        password = self.dir / "console-password"
        password.write_text(console.password)
        password.chmod(0o600)
        settings = {
            "state_dir": str(self.state),
            "source": {"url": str(repo.bare), "poll_interval": 0.5, "jitter": 0.0},
            "status": {"listen": ""},
            "runtime": {"backend": "kubernetes", "namespace": NAMESPACE, "instance": INSTANCE, "concurrency": 1},
            "gateway": {"console_url": console.url, "password_file": str(password), "routes": ROUTES,
                        "concurrency": 1},
            "secret_store": {"backend": "kubernetes"},
            "leader_election": {"enabled": True, "lease_name": LEASE, "namespace": NAMESPACE, "identity": name,
                                "replicate_state": True, "replicate_interval": 300.0, **TIMING},
        }
        self.settings = self.dir / "settings.yaml"
        self.settings.write_text(yaml.safe_dump(settings))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HICLAW_GITOPS_", "KUBERNETES_"))}
        self.env["KUBECONFIG"] = str(server.kubeconfig(self.dir / "kubeconfig", token=name))
        self.env["HOME"] = str(self.dir)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gitops", "run", "--settings", str(self.settings), "--log-format", "text"],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.dir, start_new_session=True)
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def loop(self) -> LoopState:
        return LoopState.load(self.state / "loop.json")

    def reconciled(self, commit: str) -> bool:
        state = self.loop()
        return state.last_commit == commit and state.last_result == "Reconciled"

    def generation(self) -> int:
        try:
            return int(json.loads((self.state / "replica.json").read_text())["generation"])
        except (OSError, ValueError, KeyError):
            return 0

    def inventory(self) -> list[str]:
        store = StateStore(self.state)
        try:
            return store.inventory_keys()
        finally:
            store.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def site(fake_server: FakeApiServer, tmp_path: Path) -> Iterator[tuple[FakeApiServer, Any, Repo]]:
    console = _fake_higress().start()
    admin = httpx.Client(base_url=console.url, auth=(console.username, console.password), timeout=10)
    for route in ROUTES:
        body = {"name": route["name"], "pathPredicate": {"matchType": "PRE", "matchValue": f"/{route['name']}",
                                                         "caseSensitive": False},
                "upstreams": [{"provider": "fake", "weight": 100}],
                "authConfig": {"enabled": True, "allowedCredentialTypes": ["key-auth"], "allowedConsumers": []}}
        assert admin.post("/v1/ai/routes", json=body).status_code in (200, 201)
    body = {"name": "github", "type": "OPEN_API", "consumerAuthInfo": {"type": "key-auth", "enable": True,
                                                                        "allowedConsumers": []}}
    assert admin.put("/v1/mcpServer", json=body).status_code in (200, 201, 204)
    admin.close()
    yield fake_server, console, Repo(tmp_path / "repo")
    console.stop()


def lease_holder(server: FakeApiServer) -> str:
    lease = server.cluster.get("leases", NAMESPACE, LEASE)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def credentials(server: FakeApiServer) -> dict[str, str]:
    """Credential Secret -> digest of its data (values never leave this function)."""
    with server.cluster.lock:
        found = {name: server.cluster.objects[("secrets", ns, name)] for (r, ns, name) in server.cluster.objects
                 if r == "secrets" and name.startswith("hiclaw-secret-")}
        return {name: hashlib.sha256(json.dumps(obj.get("data"), sort_keys=True).encode()).hexdigest()
                for name, obj in found.items()}


def snapshot_generations(server: FakeApiServer) -> set[int]:
    with server.cluster.lock:
        return {int(obj["metadata"]["labels"]["hiclaw.io/state-generation"])
                for (r, _, name), obj in server.cluster.objects.items()
                if r == "secrets" and name.startswith(STATE_CHUNK)}


def provider_writes(server: FakeApiServer, since: int, user: str | None = None) -> list[str]:
    """Writes to the cluster other than the election's Lease and the state snapshots, as `verb resource/name`."""
    return [f"{c.verb} {c.resource}/{c.name}" for c in server.cluster.calls[since:]
            if c.verb in ("create", "update", "patch", "delete") and c.resource != "leases"
            and not c.name.startswith(STATE_CHUNK) and (user is None or c.user == user)]


def start_pair(site: tuple[FakeApiServer, Any, Repo], tmp_path: Path) -> tuple[Replica, Replica, str]:
    """`a` reconciles example-org and publishes its state; then `b` starts and stands by."""
    server, console, repo = site
    head = repo.git("rev-parse", "HEAD", cwd=repo.work)
    a = Replica("replica-a", tmp_path, server, repo, console).start()
    wait_for("replica-a to lead and reconcile example-org", lambda: a.reconciled(head), timeout=180)
    assert lease_holder(server) == "replica-a"
    wait_for("replica-a to publish its state", lambda: a.generation() >= 1 and snapshot_generations(server) == {
        a.generation()})
    assert credentials(server), "example-org issued no credential (the test would prove nothing)"
    b = Replica("replica-b", tmp_path, server, repo, console).start()
    wait_for("replica-b to campaign", lambda: any(c.user == "replica-b" for c in server.cluster.calls), timeout=60)
    time.sleep(1.0)
    assert lease_holder(server) == "replica-a" and not (b.state / "loop.json").exists(), "a standby reconciled"
    return a, b, head


@pytest.mark.parametrize("how", ["killed", "terminated"])
def test_a_standby_takes_over_a_stopped_leader_with_its_state(
    site: tuple[FakeApiServer, Any, Repo], tmp_path: Path, how: str
) -> None:
    server, console, repo = site
    a, b, head = start_pair(site, tmp_path)
    try:
        before = credentials(server)
        if how == "killed":
            a.signal(signal.SIGKILL)  # no release, no last snapshot: the Lease has to expire
        else:
            assert a.stop() == 0  # SIGTERM: the last state is published and the Lease handed over at once
            assert "released the lease" in a.text()
        stopped = time.monotonic()
        wait_for("replica-b to take the Lease over", lambda: lease_holder(server) == "replica-b", timeout=30)
        took = time.monotonic() - stopped
        if how == "killed":
            assert took <= TIMING["lease_duration"] + 4 * TIMING["retry_period"] + 3
        else:
            assert took < TIMING["lease_duration"], f"a released Lease was taken over only after {took:.1f}s"
        newest = max(snapshot_generations(server))  # what replica-a published last (at most one more than it noted)
        assert newest >= a.generation() >= 1
        wait_for("replica-b to restore the state", lambda: b.generation() >= newest, timeout=30)
        assert f"state restored from the cluster  generation={newest}" in b.text()
        assert b.loop().last_commit == head and b.inventory() == a.inventory() and b.inventory()
        calls, console_writes = len(server.cluster.calls), console.writes()
        (repo.work / "NOTES.md").write_text("a commit that changes no org document\n")
        new = repo.commit("notes")
        wait_for("replica-b to reconcile the next commit", lambda: b.reconciled(new), timeout=120)
        assert provider_writes(server, calls) == [], "the new leader wrote to the cluster"
        assert console.writes() == console_writes, "the new leader wrote to the gateway"
        same = credentials(server) == before
        assert same, "a credential was issued again"
        assert "Traceback" not in b.text()
    finally:
        b.stop()
        a.stop()


def test_a_paused_leader_that_wakes_after_losing_the_lease_writes_nothing(
    site: tuple[FakeApiServer, Any, Repo], tmp_path: Path
) -> None:
    server, console, repo = site
    a, b, _ = start_pair(site, tmp_path)
    try:
        held = server.cluster.hold("patch", "deployments", user="replica-a")
        (repo.work / "workers" / "late-joiner.yaml").write_text(
            "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: late-joiner\n"
            "spec:\n  model: qwen3.6-plus\n")
        new = repo.commit("a worker joins")
        assert held.arrived.wait(120), "replica-a never reached the runtime write of the new worker"
        settle(console.writes)  # the gateway's part of the pass (consumer, grants) is over first
        a.signal(signal.SIGSTOP)  # paused mid-pass, one write in flight
        held.release.set()  # the in-flight write lands now, while the Lease is still replica-a's
        paused = time.monotonic()
        issued = credentials(server)  # the new worker's gateway key included: replica-a issued it before the pause
        wait_for("replica-b to take the Lease over", lambda: lease_holder(server) == "replica-b", timeout=30)
        assert time.monotonic() - paused >= TIMING["renew_deadline"]
        wait_for("replica-b to converge", lambda: b.reconciled(new), timeout=120)
        assert "runtime/container/hiclaw-worker-late-joiner" in b.inventory()
        written = credentials(server)
        reused = written == issued
        assert reused, "the new leader issued a credential again (or a new one) instead of using the store's"
        calls, console_writes = len(server.cluster.calls), console.writes()
        a.signal(signal.SIGCONT)
        wait_for("replica-a to stand by", lambda: "standing by" in a.text(), timeout=60)
        time.sleep(3 * 0.5)  # a few more of its poll intervals
        assert provider_writes(server, calls, user="replica-a") == [], "the woken leader wrote to the cluster"
        assert console.writes() == console_writes, "the woken leader wrote to the gateway"
        assert lease_holder(server) == "replica-b"
        assert "status not written: this replica does not hold the leader lease" in a.text()
        assert not a.reconciled(new), "the woken leader recorded the commit as reconciled"
        same = credentials(server) == written
        assert same, "a credential changed after the takeover"
        assert "Traceback" not in a.text() and "Traceback" not in b.text()
    finally:
        b.stop()
        a.stop()
