"""The in-memory reference backend: a dict of objects that behaves as the Backend protocol says a backend must.

It is the reference the other backends are compared with, and the test double for the engine: every call is
recorded (`calls`, `list_calls`, `write_calls`, the peak number of writes in flight), a fixed `latency` can
be added to every call, and a fault injector decides per call whether to raise a TransientError or a
PermanentError, to report success without writing (a backend that lies), or to "crash" — raise a
BaseException, like a kill -9 in the middle of a write, after or before the write as configured.

Ownership works as on a real system: objects carry the instance label (`managed_by`) of whoever created
them; `observe()` lists only ours; objects without our label ("foreign", see `put_foreign`) are never
listed, changed or deleted, and a create that collides with one fails permanently.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gitops.objects import ManagedObject, Provider
from gitops.providers.protocol import Observed, Outcome, PermanentError, Resolve, TransientError

LIE: Literal["lie"] = "lie"

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
    """One object in the store: its spec as desired (secret references, never values), the spec as written
    (secrets resolved — what a real system would hold), the hash recorded when it was applied, and its
    owner label (None: not created by any reconciler)."""

    spec: Mapping[str, Any]
    resolved: Mapping[str, Any]
    recorded_hash: str | None
    managed_by: str | None


class MemoryBackend:
    """A Backend over a dict. One instance serves one provider and the object types given at construction."""

    def __init__(
        self,
        provider: Provider | str = Provider.RUNTIME,
        types: Iterable[str] = (),
        *,
        instance: str = "hiclaw-gitops",
        latency: float = 0.0,
        faults: FaultInjector | None = None,
        record_hash: bool = True,
        settings: Any = None,
        secrets: Any = None,
        objects: dict[str, Stored] | None = None,
    ) -> None:
        """`settings` (a provider's settings section, as the registry passes it) supplies the instance label;
        `objects` may be shared by several instances, like one Docker engine seen by a restarted reconciler.
        With `secrets` (a SecretStore), a matrix backend behaves like the real one after logging an agent in:
        it stores the account's access token as `matrix/<name>/token` (references are otherwise resolved
        through `apply`'s `resolve`)."""
        self.provider = Provider(provider)
        self.secrets = secrets
        self.types: tuple[str, ...] = tuple(types)
        self.instance = str(getattr(settings, "instance", "") or instance)
        self.latency = latency
        self.faults = faults
        self.record_hash = record_hash  # False: behave like a store that cannot keep a hash (verify by spec)
        self.objects: dict[str, Stored] = {} if objects is None else objects  # shared: one "system", many clients
        self.calls: list[tuple[str, str]] = []
        self.list_calls = 0
        self.write_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False
        self._lock = threading.Lock()

    # Test helpers ------------------------------------------------------------------------------------

    def put(self, obj: ManagedObject, *, recorded_hash: str | None = None) -> None:
        """Place one of our objects directly (pre-existing live state), recording `obj.hash` unless told."""
        with self._lock:
            self.objects[obj.key] = Stored(obj.spec, obj.spec, recorded_hash or obj.hash, self.instance)

    def put_foreign(self, key: str, spec: Mapping[str, Any]) -> None:
        """Place an object someone else created (no label of ours): it must never be touched."""
        with self._lock:
            self.objects[key] = Stored(spec, spec, None, None)

    def ours(self) -> dict[str, Stored]:
        with self._lock:
            return {k: v for k, v in self.objects.items() if v.managed_by == self.instance}

    def reset_counters(self) -> None:
        with self._lock:
            self.calls.clear()
            self.list_calls = self.write_calls = self.max_in_flight = 0

    # Backend protocol --------------------------------------------------------------------------------

    def observe(self) -> dict[str, Observed]:
        out: dict[str, Observed] = {}
        for type_ in self._listed_types():
            self._enter("list", type_, write=False)
            try:
                self._fault("list", type_)
                prefix = f"{self.provider.value}/{type_}/"
                with self._lock:
                    for key, stored in self.objects.items():
                        if stored.managed_by == self.instance and key.startswith(prefix):
                            out[key] = Observed(key, stored.spec, stored.recorded_hash)
            finally:
                self._leave(write=False)
        return dict(sorted(out.items()))

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> Outcome:
        if action not in ("create", "update", "replace"):
            raise PermanentError(f"unknown action {action!r}")
        self._check(obj)
        self._enter("apply", obj.key, write=True)
        try:
            fault = self._fault("apply", obj.key)
            with self._lock:
                existing = self.objects.get(obj.key)
            if existing is not None and existing.managed_by != self.instance:
                raise PermanentError(f"{obj.key} exists and is not managed by {self.instance}; not touching it")
            resolved = dict(resolve(obj.spec))
            stored = Stored(obj.spec, resolved, obj.hash if self.record_hash else None, self.instance)
            if isinstance(fault, Crash):
                if fault.written:
                    self._write(obj.key, stored)
                raise fault
            if fault == LIE:
                return Outcome.CREATED if existing is None else Outcome.CONFIGURED
            self._write(obj.key, stored)
            self._issue_token(obj)
        finally:
            self._leave(write=True)
        if existing is None or action == "replace":
            return Outcome.CREATED
        if existing.recorded_hash == obj.hash or (not self.record_hash and existing.spec == obj.spec):
            return Outcome.UNCHANGED  # a create that found its own earlier, complete write: adopted as is
        return Outcome.CONFIGURED

    def delete(self, obj: ManagedObject) -> Outcome:
        self._check(obj)
        self._enter("delete", obj.key, write=True)
        try:
            fault = self._fault("delete", obj.key)
            with self._lock:
                existing = self.objects.get(obj.key)
            if existing is not None and existing.managed_by != self.instance:
                raise PermanentError(f"{obj.key} is not managed by {self.instance}; not deleting it")
            if isinstance(fault, Crash):
                if fault.written:
                    self._remove(obj.key)
                raise fault
            if fault != LIE:
                self._remove(obj.key)
        finally:
            self._leave(write=True)
        return Outcome.DELETED

    def close(self) -> None:
        self.closed = True

    # Internals ---------------------------------------------------------------------------------------

    def _listed_types(self) -> tuple[str, ...]:
        if self.types:
            return self.types
        with self._lock:  # no declared types: list whatever types are stored (one list call each)
            prefix = self.provider.value + "/"
            return tuple(sorted({k.split("/", 2)[1] for k in self.objects if k.startswith(prefix)}))

    def _check(self, obj: ManagedObject) -> None:
        if obj.provider is not self.provider or (self.types and obj.type not in self.types):
            raise PermanentError(f"{obj.key} is not served by this {self.provider.value} backend")

    def _enter(self, op: str, subject: str, *, write: bool) -> None:
        with self._lock:
            self.calls.append((op, subject))
            if write:
                self.write_calls += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            else:
                self.list_calls += 1
        if self.latency:
            time.sleep(self.latency)

    def _leave(self, *, write: bool) -> None:
        if write:
            with self._lock:
                self.in_flight -= 1

    def _fault(self, op: str, subject: str) -> BaseException | Literal["lie"] | None:
        if self.faults is None:
            return None
        fault = self.faults(op, subject)
        if isinstance(fault, Crash):
            return fault
        if isinstance(fault, BaseException):
            raise fault
        return fault

    def _issue_token(self, obj: ManagedObject) -> None:
        if self.secrets is None or self.provider is not Provider.MATRIX or obj.type != "user":
            return
        name = f"matrix/{obj.name}/token"
        if name not in self.secrets.names():
            self.secrets.put(name, "syt_" + secrets.token_hex(16))

    def _write(self, key: str, stored: Stored) -> None:
        with self._lock:
            self.objects[key] = stored

    def _remove(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)


def transient_then_ok(failures: int, retry_after: float | None = None) -> FaultInjector:
    """A fault injector failing each (operation, key) `failures` times with a TransientError, then succeeding."""
    seen: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def inject(op: str, subject: str) -> BaseException | None:
        with lock:
            n = seen.get((op, subject), 0)
            seen[(op, subject)] = n + 1
        if n < failures:
            return TransientError(f"{op} {subject}: try again", retry_after=retry_after)
        return None

    return inject


