"""The Docker engine goes away in the middle of a pass, then comes back.

The backend talks to the real engine through a unix-socket relay that the test cuts mid-apply (listening
socket closed, live connections dropped): to the reconciler the engine is gone, exactly as if dockerd had
stopped, while other tests keep their engine. The pass must end `failed` with the engine named as the cause,
record in the inventory only what really exists, and the next pass — engine back — must converge with one
container per agent and nothing left to do.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerharness import IMAGES, INSTANCE, NETWORK, SESSION

from deploy import localstack
from gitops.apply.executor import ApplyOptions
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.pipeline import ReconcileResult, reconcile
from gitops.providers.wiring import build_backends, close_backends
from gitops.settings.model import RuntimeSettings, Settings
from gitops.source.files import DirectorySource

ENGINE = "/var/run/docker.sock"
AGENTS = 6
WORKER = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: w{i}-{session}\nspec:\n  model: m\n"


class Relay:
    """Forwards a unix socket to the engine's until cut. Loopback only: both ends are files on this machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> Relay:
        self.path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(16)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        with self.lock:
            for c in self.conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self.conns.clear()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def relay(tmp_path: Path, docker_client: Any, images: Any) -> Iterator[Relay]:
    r = Relay(tmp_path / "engine.sock").start()
    try:
        yield r
    finally:
        r.cut()
        localstack.remove_instance(INSTANCE, NETWORK)


def run(settings: Settings, org: Path, timeout: float) -> ReconcileResult:
    store, secrets = StateStore(settings.state_dir), SecretStore(settings.state_dir)
    backends = build_backends(settings, secrets)
    try:
        return reconcile(DirectorySource(org), settings, store=store, secrets=secrets, backends=backends,
                         options=ApplyOptions(default_concurrency=1, timeout=timeout, backoff=0.05, backoff_max=0.2))
    finally:
        close_backends(backends)
        store.close()


def ours(client: Any) -> list[str]:
    found = client.api.containers(all=True, filters={"label": [f"hiclaw.io/managed-by={INSTANCE}"]})
    return sorted(c["Names"][0].lstrip("/") for c in found)


def test_engine_lost_mid_pass_fails_honestly_and_the_next_pass_converges(
    relay: Relay, docker_client: Any, tmp_path: Path
) -> None:
    org = tmp_path / "org"
    org.mkdir()
    for i in range(AGENTS):
        (org / f"w{i}.yaml").write_text(WORKER.format(i=i, session=SESSION))
    settings = Settings(state_dir=str(tmp_path / "state"), runtime=RuntimeSettings(
        backend="docker", instance=INSTANCE, network=NETWORK, images=IMAGES, docker_url=f"unix://{relay.path}",
        concurrency=1))

    outcome: list[ReconcileResult] = []
    worker = threading.Thread(target=lambda: outcome.append(run(settings, org, timeout=2.0)))
    worker.start()
    deadline = time.monotonic() + 60
    while len(ours(docker_client)) < 2:
        assert worker.is_alive() and time.monotonic() < deadline, "the pass ended before the engine was cut"
        time.sleep(0.005)
    relay.cut()
    worker.join(timeout=120)
    assert not worker.is_alive()

    first = outcome[0]
    assert first.phase == "failed" and first.run is not None
    assert not first.run.verified
    assert first.run.failed, "the changes that met no engine must fail, not pass as done"
    assert all("docker" in s.message.lower() or "engine" in s.message.lower() for s in first.run.failed)
    existing = ours(docker_client)
    # one finished before the cut; a second one may have been created and, failing to start, removed again
    assert 1 <= len(existing) < AGENTS
    store = StateStore(settings.state_dir)
    try:  # the inventory never claims a container the engine does not have
        assert {k.rsplit("/", 1)[1] for k in store.inventory()} <= set(existing)
    finally:
        store.close()

    relay.start()  # the engine is back
    second = run(settings, org, timeout=60.0)
    assert second.phase == "applied", (second.error, second.run and second.run.failed)
    assert ours(docker_client) == [f"hiclaw-worker-w{i}-{SESSION}" for i in range(AGENTS)]
    assert len(docker_client.networks.list(names=[NETWORK])) == 1
    third = run(settings, org, timeout=60.0)
    assert third.plan is not None and not third.plan.has_changes
