"""The Docker test environment: the conformance harness for containers, plus helpers the Docker tests share.

Constants name this test session: its instance (`hiclaw-test-<id>`), network and session label, so a run
touches nothing but what it created, and a crashed run's leftovers are recognisable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from typing import Any

import docker.errors

from backends.docker import LABEL_MANAGED_BY, DockerBackend
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.providers.conformance import secret_resolver
from gitops.providers.protocol import BackendContext, Resolve
from gitops.settings.model import RuntimeSettings

SESSION = f"{os.getpid()}-{secrets.token_hex(3)}"
INSTANCE = f"hiclaw-test-{SESSION}"
NETWORK = f"hiclaw-test-net-{SESSION}"
SESSION_LABEL = "hiclaw.io/test-session"
IMAGES = {
    "openclaw": "hiclaw-test/worker-agent:latest",
    "copaw": "hiclaw-test/copaw-worker:latest",
    "hermes": "hiclaw-test/hermes-worker:latest",
}


def remove_session_containers(client: Any) -> None:
    for attrs in client.api.containers(all=True, filters={"label": [f"{SESSION_LABEL}={SESSION}"]}):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(attrs["Id"], force=True)


class DockerEnv:
    """The conformance harness for Docker containers (`gitops.providers.conformance.Harness`), and helpers for
    the Docker-specific tests. Network and restart policy are backend settings, not part of a container spec."""

    backend_class = DockerBackend
    records_hash = True  # the spec-hash label

    def __init__(self, client: Any, images: Mapping[str, str]) -> None:
        self.client = client
        self.api = client.api
        self.images = images
        self.instance = INSTANCE
        self.network = NETWORK
        self.resolve: Resolve = secret_resolver()
        self._foreign: dict[str, str] = {}

    # Harness ---------------------------------------------------------------------------------------------

    def settings(self, **changes: Any) -> RuntimeSettings:
        return RuntimeSettings(**{"instance": self.instance, "network": self.network, **changes})

    def context(self) -> BackendContext:
        return BackendContext(settings=self.settings(), instance=self.instance)

    def backend(self) -> DockerBackend:
        return DockerBackend(self.context())

    def desired(
        self,
        name: str,
        revision: int = 0,
        *,
        runtime: str = "openclaw",
        enforce: bool = True,
        state: str | None = None,
        config: str = "cfg-0",
        image: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> ManagedObject:
        """A worker container like the compiler's. Revisions alternate the state (an in-place update)."""
        env = {
            "HICLAW_WORKER_NAME": name,
            "HICLAW_WORKER_CR_NAME": name,
            "HICLAW_WORKER_MATRIX_TOKEN": secret_ref(f"agent/{name}/matrix-token"),
            "HOME": f"/root/hiclaw-fs/agents/{name}",
            **(extra_env or {}),
        }
        labels = {
            LABEL_MANAGED_BY: self.instance,
            "hiclaw.io/kind": "Worker",
            "hiclaw.io/name": name,
            "hiclaw.io/role": "standalone",
            "hiclaw.io/runtime": runtime,
            "hiclaw.io/config-hash": config,
            SESSION_LABEL: SESSION,
        }
        spec = {
            "image": image or self.images[runtime],
            "runtime": runtime,
            "role": "standalone",
            "env": dict(sorted(env.items())),
            "labels": labels,
            "ports": [{"container": 8088}],
            "state": state or ("Running", "Sleeping")[revision % 2],
            "enforce_state": enforce,
            "config_hash": config,
        }
        return ManagedObject(Provider.RUNTIME, "container", f"hiclaw-worker-{name}", spec, f"Worker/{name}")

    def replaced(self, obj: ManagedObject) -> ManagedObject:
        """The runtime switch: copaw's image and runtime label, same name and identity."""
        name = obj.spec["env"]["HICLAW_WORKER_NAME"]
        return self.desired(name, runtime="copaw" if obj.spec["runtime"] != "copaw" else "hermes",
                            state=obj.spec["state"], enforce=obj.spec["enforce_state"])

    def count(self, name: str) -> int:
        return len([a for a in self.api.containers(all=True, filters={"name": f"^/{name}$"})
                    if f"/{name}" in a["Names"]])

    def plant_foreign(self, name: str) -> None:
        result = self.api.create_container(
            self.images["openclaw"], name=name,
            labels={LABEL_MANAGED_BY: "someone-else", SESSION_LABEL: SESSION},
            host_config=self.api.create_host_config(network_mode="none"),
        )
        self._foreign[name] = result["Id"]

    def foreign_intact(self, name: str) -> bool:
        try:
            attrs = self.api.inspect_container(name)
        except docker.errors.NotFound:
            return False
        return bool(attrs["Id"] == self._foreign.get(name))

    # Helpers ---------------------------------------------------------------------------------------------

    def inspect(self, obj: ManagedObject) -> dict[str, Any]:
        return dict(self.api.inspect_container(obj.name))

    def env_of(self, obj: ManagedObject) -> dict[str, str]:
        pairs = (item.split("=", 1) for item in self.inspect(obj)["Config"]["Env"] or ())
        return {k: v for k, v in pairs}

    def cleanup(self) -> None:
        remove_session_containers(self.client)


