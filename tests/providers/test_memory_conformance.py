"""The in-memory reference backend passes the shared backend conformance suite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from backends.memory import MemoryBackend, Stored
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.providers.conformance import ConformanceSuite, Harness, secret_resolver
from gitops.providers.protocol import Backend


class MemoryHarness:
    """One shared dict is the "system"; every backend instance is a client of it."""

    def __init__(self) -> None:
        self.system: dict[str, Stored] = {}
        self.planted: dict[str, Stored] = {}
        self._resolve = secret_resolver()

    def backend(self) -> Backend:
        return MemoryBackend(Provider.RUNTIME, ("container",), objects=self.system)

    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        spec = {"image": "img:1", "env": {"PASSWORD": secret_ref(f"matrix/{name}/password")}, "revision": revision}
        return ManagedObject(Provider.RUNTIME, "container", name, spec, f"Worker/{name}")

    def replaced(self, obj: ManagedObject) -> ManagedObject:
        return ManagedObject(obj.provider, obj.type, obj.name, {**obj.spec, "image": "img:2"}, obj.owner)

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._resolve(spec)

    def count(self, name: str) -> int:
        return sum(1 for key in self.system if key.split("/", 2)[2] == name)

    def plant_foreign(self, name: str) -> None:
        stored = Stored({"image": "theirs"}, {"image": "theirs"}, None, None)
        self.system[f"runtime/container/{name}"] = self.planted[name] = stored

    def foreign_intact(self, name: str) -> bool:
        return self.system.get(f"runtime/container/{name}") is self.planted[name]


class TestMemoryConformance(ConformanceSuite):
    @pytest.fixture
    def harness(self) -> Harness:
        return MemoryHarness()
