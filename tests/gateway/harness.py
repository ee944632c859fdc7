"""Conformance harness for the gateway backend on the contract fake: consumers are the core suite's owned type."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backends.gateway import GatewayBackend
from gitops.apply.secrets import SecretStore
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.providers.protocol import Backend, BackendContext

from .site import Site

OWNER = "Worker/conf"


def fast(backend: GatewayBackend) -> GatewayBackend:
    """Retries without long waits (the fake's faults are few and injected on purpose)."""
    backend.http.backoff, backend.http.backoff_max, backend.http.deadline = 0.01, 0.05, 30.0
    return backend


class GatewayHarness:
    """The fake console plus a secret store on the suite's state directory (the executor's store shares it,
    so the backend proves its consumers by the very keys the executor generated)."""

    backend_class = GatewayBackend
    records_hash = False  # the console keeps no hash on anything

    def __init__(self, site: Site, state_dir: Path) -> None:
        self.site = site
        self.store = SecretStore(state_dir, key="")
        self.planted: dict[str, set[str]] = {}

    def context(self) -> BackendContext:
        return BackendContext(settings=self.site.settings, secrets=self.store)

    def backend(self) -> Backend:
        return fast(GatewayBackend(self.context()))

    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        credential: dict[str, Any] = {"type": "key-auth", "source": "BEARER", "key": secret_ref(f"gateway/{name}/key")}
        if revision:
            credential.update(source="HEADER", param=f"x-api-key-{revision}")
        return ManagedObject(Provider.GATEWAY, "consumer", name, {"name": name, "credential": credential}, OWNER)

    def replaced(self, obj: ManagedObject) -> None:
        return None  # a consumer has no field that forces re-creation

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.store.resolve(spec)

    def count(self, name: str) -> int:
        assert self.site.fake is not None
        return int(name in self.site.fake.data["consumers"])

    def plant_foreign(self, name: str) -> None:
        self.site.plant_consumer(name)
        self.planted[name] = self.site.consumer_keys(name)

    def foreign_intact(self, name: str) -> bool:
        return bool(self.planted.get(name)) and self.site.consumer_keys(name) == self.planted[name]

    def close(self) -> None:
        self.store.close()
