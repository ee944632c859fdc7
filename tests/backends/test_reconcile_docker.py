"""Whole reconciles on the real engine: the states of SPEC §3.6 converge, and a second pass changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerharness import IMAGES, INSTANCE, NETWORK, SESSION

from deploy import localstack
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.pipeline import ReconcileResult, reconcile
from gitops.providers.protocol import Scope
from gitops.providers.wiring import build_backends, close_backends
from gitops.settings.model import RuntimeSettings, Settings
from gitops.source.files import DirectorySource

WORKER = """apiVersion: hiclaw.io/v1beta1
kind: Worker
metadata:
  name: {name}
spec:
  model: qwen3.6-plus
  runtime: {runtime}
  state: {state}
"""


class Site:
    """An org directory, a state directory and the Docker backend of this test session."""

    def __init__(self, root: Path) -> None:
        self.org = root / "org"
        self.org.mkdir()
        self.settings = Settings(
            state_dir=str(root / "state"),
            runtime=RuntimeSettings(backend="docker", instance=INSTANCE, network=NETWORK, images=IMAGES),
        )
        self.store = StateStore(self.settings.state_dir)
        self.secrets = SecretStore(self.settings.state_dir)
        self.backends = build_backends(self.settings, self.secrets)

    def declare(self, name: str, runtime: str = "openclaw", state: str = "Running") -> None:
        """Agent names carry this session's tag: container names are global to the engine."""
        (self.org / f"{name}.yaml").write_text(WORKER.format(name=f"{name}-{SESSION}", runtime=runtime, state=state))

    @staticmethod
    def container(name: str) -> str:
        return f"hiclaw-worker-{name}-{SESSION}"

    def reconcile(self) -> ReconcileResult:
        result = reconcile(DirectorySource(self.org), self.settings, store=self.store, secrets=self.secrets,
                           backends=self.backends)
        assert result.ok, (result.phase, result.error, result.run and result.run.failed)
        return result

    def containers(self) -> dict[str, str]:
        observed = next(iter(self.backends.values())).observe(Scope({}))
        return {k.rsplit("/", 1)[1].removesuffix(f"-{SESSION}"): o.spec["state"] for k, o in observed.items()}


@pytest.fixture
def site(docker_client: Any, images: Any, tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        close_backends(s.backends)
        localstack.remove_instance(INSTANCE, NETWORK)


def changes(result: ReconcileResult) -> dict[str, int]:
    assert result.plan is not None
    return result.plan.counts()


NONE = {"create": 0, "update": 0, "replace": 0, "delete": 0}


def test_running_sleeping_stopped_and_back(site: Site) -> None:
    site.declare("alice")
    assert changes(site.reconcile())["create"] == 1
    assert site.containers() == {"hiclaw-worker-alice": "Running"}
    assert changes(site.reconcile()) == NONE

    site.declare("alice", state="Sleeping")
    site.reconcile()
    assert site.containers() == {"hiclaw-worker-alice": "Sleeping"}  # stopped, kept
    assert changes(site.reconcile()) == NONE

    site.declare("alice", state="Stopped")
    site.reconcile()
    assert site.containers() == {}  # removed: Stopped is the absence of a container
    assert changes(site.reconcile()) == NONE  # and that absence is not planned again

    site.declare("alice")
    site.reconcile()
    assert site.containers() == {"hiclaw-worker-alice": "Running"}


def test_runtime_switch_replaces_the_container_and_keeps_the_name(site: Site) -> None:
    site.declare("bob", runtime="openclaw")
    site.reconcile()
    site.declare("bob", runtime="hermes")
    result = site.reconcile()
    assert result.plan is not None
    assert [(c.key, c.action.value) for c in result.plan.changes if c.action.value != "noop"] == [
        (f"runtime/container/{site.container('bob')}", "replace")
    ]
    assert site.containers() == {"hiclaw-worker-bob": "Running"}
    assert changes(site.reconcile()) == NONE


def test_an_agent_that_sleeps_on_its_own_is_not_fought(site: Site, docker_client: Any) -> None:
    site.declare("carol")
    site.reconcile()
    docker_client.containers.get(site.container("carol")).stop(timeout=1)  # the agent's idle timeout
    assert changes(site.reconcile()) == NONE
    assert site.containers() == {"hiclaw-worker-carol": "Sleeping"}


def test_a_container_removed_behind_its_back_is_recreated(site: Site, docker_client: Any) -> None:
    site.declare("dave")
    site.reconcile()
    docker_client.containers.get(site.container("dave")).remove(force=True)
    assert changes(site.reconcile())["create"] == 1
    assert site.containers() == {"hiclaw-worker-dave": "Running"}


def test_a_mass_deletion_trips_the_prune_guard_and_touches_nothing(site: Site) -> None:
    for i in range(7):
        site.declare(f"agent-{i}")
    site.reconcile()
    for i in range(1, 7):
        (site.org / f"agent-{i}.yaml").unlink()
    refused = reconcile(DirectorySource(site.org), site.settings, store=site.store, secrets=site.secrets,
                        backends=site.backends)
    assert refused.phase == "refused" and refused.run is not None
    assert "6 agents would be deleted (limit 5)" in refused.run.refused
    assert len(site.containers()) == 7  # nothing was deleted
    allowed = reconcile(DirectorySource(site.org), site.settings, store=site.store, secrets=site.secrets,
                        backends=site.backends, allow_mass_delete=True)
    assert allowed.phase == "applied"
    assert site.containers() == {"hiclaw-worker-agent-0": "Running"}
