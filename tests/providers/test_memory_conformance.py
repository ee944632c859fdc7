"""The in-memory reference backend passes the shared backend conformance suite (protocol v2).

Three configurations of `backends.memory.MemoryBackend`, each a thin subclass that declares `provider`,
`types` and `traits` on the class (what the registry and the core read without constructing) and is built
with a `BackendContext` whose settings section is the shared "system" — one dict every instance is a client
of, like one server seen by a restarted reconciler:

- `ContainerMemory`: one owned, container-like runtime type — the core suite;
- the same with `record_hash=False` — the core suite for a store that keeps no hash (verify by spec);
- `MatrixMemory`: users (owned, producing an access token, a write-only password), rooms (owned, created with
  a user's token) and grants (entries of a shared access record) — the core suite on rooms plus every
  capability suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from backends.memory import MemoryBackend, Stored
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.providers.conformance import (
    ConformanceSuite,
    MultiTypeSuite,
    ProducerConsumerSuite,
    SharedRecordSuite,
    WriteOnlySuite,
    plan_live,
    run_plan,
    secret_resolver,
)
from gitops.providers.protocol import BackendContext, Ownership, TypeTraits

INSTANCE = "hiclaw-gitops-conformance"


@dataclass
class MemorySystem:
    """The memory backend's settings section in these tests: the store it is a client of."""

    objects: dict[str, Stored] = field(default_factory=dict)
    records: dict[str, dict[str, Stored]] = field(default_factory=dict)
    record_hash: bool = True


class _SystemMemory(MemoryBackend):
    """A MemoryBackend whose declarations live on the class and whose store comes from the context."""

    provider: Provider
    types: tuple[str, ...]

    def __init__(self, ctx: BackendContext) -> None:
        system = ctx.settings
        assert isinstance(system, MemorySystem)
        cls = type(self)
        super().__init__(cls.provider, cls.types, traits=cls.traits, instance=ctx.instance,
                         objects=system.objects, records=system.records, record_hash=system.record_hash)


class ContainerMemory(_SystemMemory):
    provider = Provider.RUNTIME
    types = ("container",)
    traits: Mapping[str, TypeTraits] = {"container": TypeTraits(replace_on=frozenset({"image"}))}


class MatrixMemory(_SystemMemory):
    provider = Provider.MATRIX
    types = ("user", "room", "grant")
    traits: Mapping[str, TypeTraits] = {
        "user": TypeTraits(write_only=frozenset({"password"})),
        "room": TypeTraits(replace_on=frozenset({"encrypted"})),
        "grant": TypeTraits(ownership=Ownership.SHARED),
    }


class MemoryHarness:
    """Shared by both configurations: one system, backends built from one context, foreign objects planted
    with no owner label."""

    backend_class: type[_SystemMemory]
    core_type: str

    def __init__(self, record_hash: bool = True) -> None:
        self.system = MemorySystem(record_hash=record_hash)
        self.records_hash = record_hash
        self.planted: dict[str, Stored] = {}
        self._resolve = secret_resolver()

    def context(self) -> BackendContext:
        return BackendContext(settings=self.system, instance=INSTANCE)

    def backend(self) -> _SystemMemory:
        return self.backend_class(self.context())

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._resolve(spec)

    def key(self, name: str) -> str:
        return f"{self.backend_class.provider.value}/{self.core_type}/{name}"

    def count(self, name: str) -> int:
        return sum(1 for key in self.system.objects if key == self.key(name))

    def plant_foreign(self, name: str) -> None:
        self.backend().put_foreign(self.key(name), {"planted": "by someone else"})
        self.planted[name] = self.system.objects[self.key(name)]

    def foreign_intact(self, name: str) -> bool:
        return self.system.objects.get(self.key(name)) is self.planted[name]


class ContainerHarness(MemoryHarness):
    backend_class = ContainerMemory
    core_type = "container"

    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        spec = {"image": "img:1", "env": {"PASSWORD": secret_ref(f"matrix/{name}/password")}, "revision": revision}
        return ManagedObject(Provider.RUNTIME, "container", name, spec, f"Worker/{name}")

    def replaced(self, obj: ManagedObject) -> ManagedObject:
        return obj.with_spec({**obj.spec, "image": "img:2"})


class MatrixHarness(MemoryHarness):
    backend_class = MatrixMemory
    core_type = "room"

    # Core: rooms, created with the token of the agent that owns them.
    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        return self.consumer(name, f"matrix/{name}-owner/token", revision)

    def replaced(self, obj: ManagedObject) -> ManagedObject:
        return obj.with_spec({**obj.spec, "encrypted": not obj.spec["encrypted"]})

    # Several types.
    def sample(self, type_: str, name: str) -> ManagedObject:
        if type_ == "user":
            return self.producer(name)
        if type_ == "room":
            return self.desired(name)
        assert type_ == "grant", type_
        return self.entry(name, f"acl/{name}")

    # Producer and consumer: a user's login issues its access token; a room is written with it.
    def producer(self, name: str) -> ManagedObject:
        return self.with_write_only(name)

    def consumer(self, name: str, secret: str, revision: int = 0) -> ManagedObject:
        spec = {"topic": f"room {name}, revision {revision}", "encrypted": False, "creator_token": secret_ref(secret)}
        return ManagedObject(Provider.MATRIX, "room", name, spec, f"Team/{name}")

    def written(self, obj: ManagedObject) -> Mapping[str, Any]:
        return self.system.objects[obj.key].resolved

    # Write-only: a user's password can be set, never read back. Revisions point it at another credential.
    def with_write_only(self, name: str, revision: int = 0) -> ManagedObject:
        password = secret_ref(f"matrix/{name}/password" if not revision else f"matrix/{name}-r{revision}/password")
        spec = {"displayname": name.title(), "admin": False, "password": password}
        return ManagedObject(Provider.MATRIX, "user", name, spec, f"Worker/{name}", produces=(f"matrix/{name}/token",))

    def hashless_backend(self) -> MatrixMemory:
        backend = MatrixMemory(self.context())
        backend.record_hash = False
        return backend

    # Shared records: grants on one access record per room.
    def entry(self, name: str, record: str, revision: int = 0) -> ManagedObject:
        spec = {"record": record, "member": f"@{name}:hiclaw.test", "level": 50 + revision}
        return ManagedObject(Provider.MATRIX, "grant", name, spec, "org", shares=record)

    def plant_foreign_entry(self, record: str, entry: str) -> None:
        self.backend().put_foreign_entry(record, f"grant/{entry}", {"member": f"@{entry}:elsewhere.test", "level": 100})
        self.planted[f"{record}#{entry}"] = self.system.records[record][f"grant/{entry}"]

    def foreign_entry_intact(self, record: str, entry: str) -> bool:
        return self.system.records.get(record, {}).get(f"grant/{entry}") is self.planted[f"{record}#{entry}"]


class TestMemoryContainer(ConformanceSuite):
    @pytest.fixture
    def harness(self) -> ContainerHarness:
        return ContainerHarness()


class TestMemoryContainerHashless(ConformanceSuite):
    """A store that keeps no hash on its objects: observed specs are compared, as the executor's verify does."""

    @pytest.fixture
    def harness(self) -> ContainerHarness:
        return ContainerHarness(record_hash=False)


class TestMemoryMatrix(ConformanceSuite, MultiTypeSuite, ProducerConsumerSuite, SharedRecordSuite, WriteOnlySuite):
    @pytest.fixture
    def harness(self) -> MatrixHarness:
        return MatrixHarness()

    def test_the_store_saw_no_overlap(
        self, harness: MatrixHarness, state: StateStore, secret_store: SecretStore
    ) -> None:
        """The memory store's own overlap counter agrees with the suite's `Instrumented` wrapper: six entries of
        one record, written by the executor with eight workers, strictly one at a time."""
        backend = harness.backend()
        backend.latency = 0.02
        objs = [harness.entry(f"overlap-{i}", "acl/one") for i in range(6)]
        plan, creds, live = plan_live(backend, state, secret_store, objs)
        run = run_plan(plan, creds, live, backend, state, secret_store, concurrency=8)
        assert run.ok, run.to_dict()
        assert set(harness.system.records["acl/one"]) == {f"grant/{o.name}" for o in objs}
        assert backend.record_overlaps == 0
        assert backend.max_in_flight == 1
