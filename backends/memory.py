"""The in-memory reference backend: a dict of objects that behaves as the backend protocol says a backend must.

It is the reference the other backends are compared with (docs/backends.md walks through it), and the test
double for the engine: every call is recorded (`calls`, `list_calls`, `write_calls`, the peak number of writes
in flight, and any two writes to one shared record that overlapped), a fixed `latency` can be added to every
call, and a fault injector decides per call whether to raise a TransientError or a PermanentError, to report
success without writing (a backend that lies), or to "crash" — raise a BaseException, like a kill -9 in the
middle of a write, after or before the write as configured.

Ownership works as on a real system. Owned types: objects carry the instance label (`managed_by`) of whoever
created them; `observe()` lists only ours; an object without our label ("foreign", see `put_foreign`) is never
listed, changed or deleted, and a create that collides with one fails permanently. Shared types: a record
(`obj.shares`) holds entries of several owners; we add, change and remove only our entries, keep everyone
else's, and adopt a record someone else created (`put_foreign_entry`).

Outputs: applying an object that declares `produces` issues a fresh value per produced secret (as a login
issues an access token) and returns it; every object gets a stable server-assigned `id` and a version counter
as its fingerprint. Write-only fields (traits) are stored but never observed.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gitops.objects import ManagedObject, Provider
from gitops.providers.protocol import (
    ApplyResult,
    BackendContext,
    Observed,
    Outcome,
    Ownership,
    PermanentError,
    Resolve,
    Scope,
    TransientError,
    TypeTraits,
    traits_of,
)

LIE: Literal["lie"] = "lie"

# A memory backend serving the runtime behaves like a runtime by default: what a container is made of forces a
# re-creation and the agent sleeps and wakes itself (the Docker backend declares the same for `container`).
RUNTIME_TRAITS: Mapping[str, TypeTraits] = {
    "container": TypeTraits(
        replace_on=frozenset({"image", "env", "runtime", "ports", "labels"}),
        self_managed=frozenset({"state"}),
    )
}

# (operation, key or type) -> None (proceed), an exception to raise, or LIE (report success, write nothing).
# Operations: "list" (key = the object type), "apply", "delete".
FaultInjector = Callable[[str, str], "BaseException | Literal['lie'] | None"]


class Crash(BaseException):
    """A simulated kill -9 during a write. With `written`, the object was written before the process died."""

    def __init__(self, written: bool = True) -> None:
        super().__init__("simulated crash" + (" after writing" if written else " before writing"))
        self.written = written


@dataclass(frozen=True, slots=True)
class Stored:
    """One object (or one entry of a shared record) in the store: its spec as desired (secret references,
    never values), the spec as written (secrets resolved — what a real system would hold), the hash recorded
    when it was applied, its owner label (None: not created by any reconciler), its id and version."""

    spec: Mapping[str, Any]
    resolved: Mapping[str, Any]
    recorded_hash: str | None
    managed_by: str | None
    id: str = ""
    version: int = 0


class MemoryBackend:
    """A backend over a dict. One instance serves one provider and the object types given at construction
    (none given: any type), with the traits given per type."""

    # As the registry builds it (`runtime.backend: memory`): a runtime backend serving any type. Instances built
    # for another provider serve that one, with the traits given (none by default).
    provider: Provider = Provider.RUNTIME
    types: tuple[str, ...] = ()
    traits: Mapping[str, TypeTraits] = RUNTIME_TRAITS

    def __init__(
        self,
        provider: Provider | str | BackendContext = Provider.RUNTIME,
        types: Iterable[str] = (),
        *,
        traits: Mapping[str, TypeTraits] | None = None,
        instance: str = "hiclaw-gitops",
        latency: float = 0.0,
        faults: FaultInjector | None = None,
        record_hash: bool = True,
        objects: dict[str, Stored] | None = None,
        records: dict[str, dict[str, Stored]] | None = None,
    ) -> None:
        """Built by the registry with a BackendContext (as the runtime backend `memory`), or directly by tests
        with a provider. `objects` and `records` may be shared by several instances, like one Docker engine
        seen by a restarted reconciler."""
        if isinstance(provider, BackendContext):
            ctx = provider
            provider = Provider.RUNTIME
            instance = str(getattr(ctx.settings, "instance", "") or ctx.instance)
        self.provider = Provider(provider)
        self.types: tuple[str, ...] = tuple(types)
        declared = type(self).traits  # a subclass may declare its own
        self.traits = dict(traits if traits is not None else declared if self.provider is Provider.RUNTIME
                           or declared is not RUNTIME_TRAITS else {})
        self.instance = instance
        self.latency = latency
        self.faults = faults
        self.record_hash = record_hash  # False: behave like a store that cannot keep a hash (verify by spec)
        self.objects: dict[str, Stored] = {} if objects is None else objects  # owned types, by key
        self.records: dict[str, dict[str, Stored]] = {} if records is None else records  # shared: record -> entries
        self.calls: list[tuple[str, str]] = []
        self.list_calls = 0
        self.write_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.record_busy: dict[str, int] = {}
        self.record_overlaps = 0  # writes to one shared record that ran at the same time (must stay 0)
        self.closed = False
        self._lock = threading.Lock()
        self._ids = 0

    # Test helpers ------------------------------------------------------------------------------------

    def put(self, obj: ManagedObject, *, recorded_hash: str | None = None) -> None:
        """Place one of our objects directly (pre-existing live state), recording `obj.hash` unless told."""
        with self._lock:
            self._store(obj, Stored(obj.spec, obj.spec, recorded_hash or obj.hash, self.instance, self._new_id(), 1))

    def put_foreign(self, key: str, spec: Mapping[str, Any]) -> None:
        """Place an object someone else created (no label of ours): it must never be touched."""
        with self._lock:
            self.objects[key] = Stored(spec, spec, None, None, self._new_id(), 1)

    def put_foreign_entry(self, record: str, entry: str, spec: Mapping[str, Any]) -> None:
        """Place someone else's entry (`type/name`) in a shared record (a consumer another tool granted on a
        route)."""
        with self._lock:
            self.records.setdefault(record, {})[entry] = Stored(spec, spec, None, None, self._new_id(), 1)

    def ours(self) -> dict[str, Stored]:
        with self._lock:
            return {k: v for k, v in self.objects.items() if v.managed_by == self.instance}

    def entries(self, record: str) -> dict[str, Stored]:
        with self._lock:
            return dict(self.records.get(record, {}))

    def reset_counters(self) -> None:
        with self._lock:
            self.calls.clear()
            self.list_calls = self.write_calls = self.max_in_flight = 0

    # Backend protocol --------------------------------------------------------------------------------

    def observe(self, scope: Scope) -> dict[str, Observed]:
        out: dict[str, Observed] = {}
        for type_ in self._listed_types(scope):
            self._enter("list", type_, write=False)
            try:
                self._fault("list", type_)
                traits = traits_of(self, type_)
                prefix = f"{self.provider.value}/{type_}/"
                with self._lock:
                    if traits.ownership is Ownership.SHARED:  # entries are keyed `type/name` inside a record
                        found = [(f"{self.provider.value}/{entry}", s) for entries in self.records.values()
                                 for entry, s in entries.items()
                                 if s.managed_by == self.instance and entry.startswith(type_ + "/")]
                    else:
                        found = [(k, s) for k, s in self.objects.items()
                                 if s.managed_by == self.instance and k.startswith(prefix)]
                for key, stored in found:
                    if scope.exact and not scope.wants(key):
                        continue
                    spec = {k: v for k, v in stored.spec.items() if k not in traits.write_only}
                    out[key] = Observed(key, spec, stored.recorded_hash, {"id": stored.id}, str(stored.version))
            finally:
                self._leave(write=False)
        return dict(sorted(out.items()))

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        if action not in ("create", "update", "replace"):
            raise PermanentError(f"unknown action {action!r}")
        self._check(obj)
        shared = traits_of(self, obj.type).ownership is Ownership.SHARED
        self._enter("apply", obj.key, write=True, record=self._record(obj) if shared else "")
        try:
            fault = self._fault("apply", obj.key)
            existing = self._existing(obj, shared)
            if not shared and existing is not None and existing.managed_by != self.instance:
                raise PermanentError(f"{obj.key} exists and is not managed by {self.instance}; not touching it")
            resolved = dict(resolve(obj.spec))
            version = (existing.version if existing else 0) + 1
            ident = existing.id if existing is not None else self._new_id()
            stored = Stored(obj.spec, resolved, obj.hash if self.record_hash else None, self.instance, ident, version)
            if isinstance(fault, Crash):
                if fault.written:
                    self._write(obj, stored, shared)
                raise fault
            produced = {name: "mem_" + secrets.token_hex(16) for name in obj.produces}
            if fault == LIE:
                return ApplyResult(Outcome.CREATED if existing is None else Outcome.CONFIGURED, produced)
            self._write(obj, stored, shared)
        finally:
            self._leave(write=True, record=self._record(obj) if shared else "")
        if existing is None or action == "replace":
            outcome = Outcome.CREATED
        elif existing.recorded_hash == obj.hash or (not self.record_hash and existing.spec == obj.spec):
            outcome = Outcome.UNCHANGED  # a create that found its own earlier, complete write: adopted as is
        else:
            outcome = Outcome.CONFIGURED
        return ApplyResult(outcome, produced, {"id": ident}, str(version))

    def delete(self, obj: ManagedObject) -> Outcome:
        self._check(obj)
        shared = traits_of(self, obj.type).ownership is Ownership.SHARED
        self._enter("delete", obj.key, write=True, record=self._record(obj) if shared else "")
        try:
            fault = self._fault("delete", obj.key)
            existing = self._existing(obj, shared)
            if existing is not None and existing.managed_by != self.instance:
                raise PermanentError(f"{obj.key} is not managed by {self.instance}; not deleting it")
            if isinstance(fault, Crash):
                if fault.written:
                    self._remove(obj, shared)
                raise fault
            if fault != LIE:
                self._remove(obj, shared)
        finally:
            self._leave(write=True, record=self._record(obj) if shared else "")
        return Outcome.DELETED

    def close(self) -> None:
        self.closed = True

    # Internals ---------------------------------------------------------------------------------------

    def _listed_types(self, scope: Scope) -> tuple[str, ...]:
        if self.types:
            return tuple(t for t in self.types if t in scope.names or not scope.exact)
        with self._lock:  # no declared types: list what the scope asks for and whatever types are stored
            prefix = self.provider.value + "/"
            stored = {k.split("/", 2)[1] for k in self.objects if k.startswith(prefix)}
        return tuple(sorted(set(scope.names) | (set() if scope.exact else stored)))

    def _record(self, obj: ManagedObject) -> str:
        return obj.shares or obj.key

    def _entry(self, obj: ManagedObject) -> str:
        return f"{obj.type}/{obj.name}"

    def _existing(self, obj: ManagedObject, shared: bool) -> Stored | None:
        with self._lock:
            if shared:
                return self.records.get(self._record(obj), {}).get(self._entry(obj))
            return self.objects.get(obj.key)

    def _check(self, obj: ManagedObject) -> None:
        if obj.provider is not self.provider or (self.types and obj.type not in self.types):
            raise PermanentError(f"{obj.key} is not served by this {self.provider.value} backend")

    def _enter(self, op: str, subject: str, *, write: bool, record: str = "") -> None:
        with self._lock:
            self.calls.append((op, subject))
            if write:
                self.write_calls += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if record:
                    if self.record_busy.get(record):
                        self.record_overlaps += 1
                    self.record_busy[record] = self.record_busy.get(record, 0) + 1
            else:
                self.list_calls += 1
        if self.latency:
            time.sleep(self.latency)

    def _leave(self, *, write: bool, record: str = "") -> None:
        if write:
            with self._lock:
                self.in_flight -= 1
                if record:
                    self.record_busy[record] -= 1

    def _fault(self, op: str, subject: str) -> BaseException | Literal["lie"] | None:
        if self.faults is None:
            return None
        fault = self.faults(op, subject)
        if isinstance(fault, Crash):
            return fault
        if isinstance(fault, BaseException):
            raise fault
        return fault

    def _new_id(self) -> str:
        self._ids += 1
        return f"{self.provider.value}-{self._ids:06d}"

    def _store(self, obj: ManagedObject, stored: Stored) -> None:
        if traits_of(self, obj.type).ownership is Ownership.SHARED:
            self.records.setdefault(self._record(obj), {})[self._entry(obj)] = stored
        else:
            self.objects[obj.key] = stored

    def _write(self, obj: ManagedObject, stored: Stored, shared: bool) -> None:
        with self._lock:
            if shared:
                self.records.setdefault(self._record(obj), {})[self._entry(obj)] = stored
            else:
                self.objects[obj.key] = stored

    def _remove(self, obj: ManagedObject, shared: bool) -> None:
        with self._lock:
            if shared:
                self.records.get(self._record(obj), {}).pop(self._entry(obj), None)
            else:
                self.objects.pop(obj.key, None)


def transient_then_ok(
    failures: int, retry_after: float | None = None, ops: tuple[str, ...] = ("apply", "delete")
) -> FaultInjector:
    """A fault injector failing each (operation, key) of `ops` `failures` times with a TransientError, then
    succeeding."""
    seen: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def inject(op: str, subject: str) -> BaseException | None:
        if op not in ops:
            return None
        with lock:
            n = seen.get((op, subject), 0)
            seen[(op, subject)] = n + 1
        if n < failures:
            return TransientError(f"{op} {subject}: try again", retry_after=retry_after)
        return None

    return inject
