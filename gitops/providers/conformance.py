"""The conformance suite every backend passes: the backend protocol's promises (v2), as reusable pytest tests.

A backend's test module subclasses `ConformanceSuite` — the core promises every backend keeps — plus the
capability suites that apply to it, and provides a `harness` fixture (one harness per test; clean up in the
fixture). Nothing in here is ever skipped: a backend without a capability simply does not inherit its suite.

    class TestMemoryMatrix(ConformanceSuite, ProducerConsumerSuite, SharedRecordSuite):
        @pytest.fixture
        def harness(self) -> MatrixHarness:
            return MatrixHarness()

| suite                   | for a backend that…                                   | harness protocol         |
|-------------------------|-------------------------------------------------------|--------------------------|
| `ConformanceSuite`      | every backend                                         | `Harness`                |
| `MultiTypeSuite`        | serves several object types                           | `MultiTypeHarness`       |
| `ProducerConsumerSuite` | produces outputs (`ManagedObject.produces`)           | `ProducerHarness`        |
| `SharedRecordSuite`     | has a type with `Ownership.SHARED` records            | `SharedHarness`          |
| `WriteOnlySuite`        | has a type with `write_only` fields                   | `WriteOnlyHarness`       |

The suite is generic over object types: the harness says what a desired object of an *owned* type looks like
(`desired`), how to change it in place (`desired(name, revision)`, planned as an update by the declared
traits) and in a way that forces re-creation (`replaced`, planned as a replace), how to plant an object
someone else owns (`plant_foreign`), and how many physical objects carry one name (`count`: the duplicate
check no observation can make, since observations are keyed by identity). A harness whose backend keeps no
hash on its objects sets `records_hash = False`; its observations are then compared by spec, as the
executor's verify does (the write-only suite's "hash" variant then expects no hash either). A harness whose
system never frees a name (a Matrix user ID outlives its account) defines `retired(name) -> bool`: after a
delete the suite then checks that what is left under the name is retired as that system means it (no
session, no room; or deactivated), instead of `count(name) == 0`. A harness whose backend cannot tell its own
objects from a listing (S3 keys carry their labels only in a HEAD) sets `lists_owned = False`: a scope with
names then returns those names, and "everything of ours" (a type with no names) is still complete.

Several cases run the real core around the backend — the executor (`gitops.apply.executor.execute`), the
state and secret stores, `gitops.pipeline.with_credentials`, the live baseline (`observe_live`) and the
planner (`make_plan`) — because what a backend returns is only right if the core can build on it: a plan made
against live state right after an apply must be empty.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from gitops.apply.executor import ApplyOptions, execute, mismatch
from gitops.apply.observe import LiveState, observe_live, spec_matches
from gitops.apply.result import RunResult
from gitops.apply.secrets import SecretStore, consumed_digest, generator_for
from gitops.apply.state import StateStore
from gitops.objects import SECRET_PREFIX, DesiredState, ManagedObject, Provider, secret_ref, secret_refs
from gitops.pipeline import Credentials, with_credentials
from gitops.plan.model import Action, Change, Plan, change_for, make_plan
from gitops.providers.protocol import (
    ApplyResult,
    Backend,
    BackendClass,
    BackendContext,
    Observed,
    Outcome,
    Ownership,
    PermanentError,
    Resolve,
    Scope,
    TypeTraits,
    traits_of,
)
from gitops.providers.wiring import Traits

__all__ = [
    "ConformanceSuite",
    "Harness",
    "Instrumented",
    "MultiTypeHarness",
    "MultiTypeSuite",
    "ProducerConsumerSuite",
    "ProducerHarness",
    "RecordingResolver",
    "SharedHarness",
    "SharedRecordSuite",
    "WriteOnlyHarness",
    "WriteOnlySuite",
    "secret_resolver",
]


# Harness protocols --------------------------------------------------------------------------------------


class Harness(Protocol):
    """What the core suite needs to know about one backend."""

    @property
    def backend_class(self) -> BackendClass:
        """The class under test, as the registry would hand it out: `provider`, `types` and `traits` declared
        on the class, built with a `BackendContext`."""
        ...

    def context(self) -> BackendContext:
        """The context this harness builds its backends with (settings section, instance label, ...)."""
        ...

    def backend(self) -> Backend:
        """A fresh backend instance on the shared system (several may exist at once, as after a restart)."""
        ...

    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        """A desired object of an owned type named `name`, whose spec references at least one secret.
        Revisions differ by a change the declared traits plan as an `update`."""
        ...

    def replaced(self, obj: ManagedObject) -> ManagedObject | None:
        """`obj` with a change of a `replace_on` field (the backend must re-create it); None when no field of
        the type forces re-creation (a "replace" is then carried out as a write in place)."""
        ...

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        """The secret store stand-in: `secret://` references → values."""
        ...

    def count(self, name: str) -> int:
        """How many physical objects exist under the object name `name`, ours or not (a duplicate shows as 2)."""
        ...

    def plant_foreign(self, name: str) -> None:
        """Create an object under the object name `name` that this reconciler instance does not own."""
        ...

    def foreign_intact(self, name: str) -> bool:
        """Whether the foreign object planted under `name` still exists, unchanged."""
        ...


class MultiTypeHarness(Harness, Protocol):
    def sample(self, type_: str, name: str) -> ManagedObject:
        """A desired object of `type_` (any type the class declares) named `name`."""
        ...


class ProducerHarness(Harness, Protocol):
    def producer(self, name: str) -> ManagedObject:
        """An object whose apply yields outputs: `produces` names at least one secret."""
        ...

    def consumer(self, name: str, secret: str) -> ManagedObject:
        """An object whose spec carries `secret://<secret>` (an output of a producer)."""
        ...

    def written(self, obj: ManagedObject) -> Mapping[str, Any]:
        """What the system holds for `obj` as last written, secrets resolved (what a real server would use)."""
        ...


class SharedHarness(Harness, Protocol):
    def entry(self, name: str, record: str, revision: int = 0) -> ManagedObject:
        """An object of a shared type: our entry `name` of the remote record `record` (`obj.shares`)."""
        ...

    def plant_foreign_entry(self, record: str, entry: str) -> None:
        """Someone else's entry in `record` (creating the record when it does not exist)."""
        ...

    def foreign_entry_intact(self, record: str, entry: str) -> bool:
        """Whether the foreign entry planted in `record` still exists, unchanged."""
        ...


class WriteOnlyHarness(Harness, Protocol):
    def with_write_only(self, name: str, revision: int = 0) -> ManagedObject:
        """An object of a type with write-only fields, every one of them set. Revisions differ only in the
        value of a write-only field."""
        ...

    def hashless_backend(self) -> Backend:
        """A backend on the same system that keeps no hash on what it writes (verify and plan by spec)."""
        ...


# Helpers ------------------------------------------------------------------------------------------------


class RecordingResolver:
    """Wraps a harness's resolver and remembers every value it put in place of a `secret://` reference, so a
    test can search observations, plans and messages for them."""

    def __init__(self, inner: Resolve) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.values: set[str] = set()

    def __call__(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        resolved = self._inner(spec)
        found: set[str] = set()
        _collect(spec, resolved, found)
        with self._lock:
            self.values |= {v for v in found if v}
        return resolved


def _collect(desired: Any, resolved: Any, out: set[str]) -> None:
    """The resolved strings standing where `desired` held a secret reference."""
    if isinstance(desired, str):
        if SECRET_PREFIX in desired and isinstance(resolved, str):
            out.add(resolved)
    elif isinstance(desired, Mapping) and isinstance(resolved, Mapping):
        for k, v in desired.items():
            if k in resolved:
                _collect(v, resolved[k], out)
    elif isinstance(desired, (list, tuple)) and isinstance(resolved, (list, tuple)):
        for a, b in zip(desired, resolved, strict=False):
            _collect(a, b, out)


def secret_resolver(prefix: str = "s3cr3t-value-for-") -> Resolve:
    """A resolver replacing every `secret://name` with a recognisable value (to check none leaks)."""

    def resolve_value(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(SECRET_PREFIX):
            return prefix + value[len(SECRET_PREFIX):].replace("/", "-")
        if isinstance(value, Mapping):
            return {k: resolve_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve_value(v) for v in value]
        return value

    def resolve(spec: Mapping[str, Any]) -> Mapping[str, Any]:
        return dict(resolve_value(dict(spec)))

    return resolve


class Instrumented:
    """A backend wrapper that holds every write for `latency` seconds and counts, per shared record
    (`obj.shares`), writes that ran at the same time — the executor must never let them."""

    def __init__(self, inner: Backend, latency: float) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.types = inner.types
        self.traits: Mapping[str, TypeTraits] = getattr(inner, "traits", None) or {}
        self.latency = latency
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self.overlaps = 0  # writes to one record in flight together
        self.peak_records = 0  # most distinct records written at the same moment

    def observe(self, scope: Scope) -> dict[str, Observed]:
        return self.inner.observe(scope)

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        with self._writing(obj):
            return self.inner.apply(obj, action, before, resolve)

    def delete(self, obj: ManagedObject) -> Outcome:
        with self._writing(obj):
            return self.inner.delete(obj)

    def close(self) -> None:
        self.inner.close()

    @contextlib.contextmanager
    def _writing(self, obj: ManagedObject) -> Iterator[None]:
        record = obj.shares or obj.key
        with self._lock:
            if self._busy.get(record):
                self.overlaps += 1
            self._busy[record] = self._busy.get(record, 0) + 1
            self.peak_records = max(self.peak_records, sum(1 for n in self._busy.values() if n))
        try:
            time.sleep(self.latency)
            yield
        finally:
            with self._lock:
                self._busy[record] -= 1


def type_scope(types: Iterable[str], keys: Iterable[str] = (), *, exact: bool = False) -> Scope:
    """A scope over `types` (with no names: "everything of ours of these types") plus the given keys."""
    names: dict[str, set[str]] = {t: set() for t in types}
    for key in keys:
        _, type_, name = key.split("/", 2)
        names.setdefault(type_, set()).add(name)
    return Scope({t: frozenset(n) for t, n in names.items()}, exact)


def exact(backend: Backend, *objs: ManagedObject) -> Scope:
    return Scope.of([o.key for o in objs], backend.provider, exact=True)


def everything(backend: Backend) -> dict[str, Observed]:
    """All of our objects of every type the backend serves."""
    return backend.observe(type_scope(backend.types))


def observed(backend: Backend, obj: ManagedObject) -> Observed | None:
    return backend.observe(exact(backend, obj)).get(obj.key)


def applied(
    backend: Backend, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve
) -> ApplyResult:
    """`backend.apply`, checked: an ApplyResult, with outputs only of what `obj` declares it produces."""
    result = backend.apply(obj, action, before, resolve)
    assert isinstance(result, ApplyResult), f"apply returned {type(result).__name__}, not an ApplyResult"
    assert isinstance(result.outcome, Outcome), f"outcome {result.outcome!r} is not an Outcome"
    undeclared = set(result.secrets) - set(obj.produces)
    assert not undeclared, f"{obj.key}: produced undeclared output(s) {sorted(undeclared)}"
    assert all(isinstance(v, str) and v for v in result.secrets.values()), f"{obj.key}: an empty output"
    return result


def leaked(values: Iterable[str], *things: Any) -> list[str]:
    """The values (secret values, produced credentials) that appear anywhere in `things`."""
    text = json.dumps([_plain(t) for t in things], sort_keys=True, default=str)
    return sorted(v for v in values if len(v) >= 4 and v in text)


def _plain(value: Any) -> Any:
    if isinstance(value, Observed):
        return {"key": value.key, "spec": _plain(value.spec), "recorded_hash": value.recorded_hash,
                "ids": dict(value.ids), "fingerprint": value.fingerprint}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return value


def assert_converged(
    harness: Harness, backend: Backend, obj: ManagedObject, secrets: Iterable[str] = ()
) -> Observed:
    """`obj` is observed exactly once, as applied by the executor's verify (its hash, or its spec where the
    backend keeps no hash), carrying no secret value; an exact observation returns nothing else."""
    traits = traits_of(harness.backend_class, obj.type)
    seen_all = backend.observe(exact(backend, obj))
    assert set(seen_all) == {obj.key}, f"exact observation of {obj.key} returned {sorted(seen_all)}"
    seen = seen_all[obj.key]
    assert seen.key == obj.key
    if getattr(harness, "records_hash", True):
        assert seen.recorded_hash == obj.hash, f"{obj.key}: recorded {seen.recorded_hash}, applied {obj.hash}"
    else:
        assert seen.recorded_hash is None, f"{obj.key}: a hashless store reported hash {seen.recorded_hash}"
    problem = mismatch(obj, seen, traits)
    assert problem == "", f"{obj.key}: the executor's verify would fail: {problem}"
    assert not leaked(secrets, seen), f"{obj.key}: a secret value is in the observation"
    assert harness.count(obj.name) == 1, f"{obj.key}: {harness.count(obj.name)} objects, expected exactly one"
    return seen


def assert_removed(harness: Harness, name: str) -> None:
    """After a delete: no object left under `name` — or, for a harness that defines `retired(name)` (a system
    that never frees a name), at most the one object, retired as that system means it."""
    retired = getattr(harness, "retired", None)
    if retired is None:
        assert harness.count(name) == 0, f"{name}: {harness.count(name)} objects left after the delete"
    else:
        assert harness.count(name) <= 1 and retired(name), f"{name}: not retired by its delete"


def seed_secrets(store: SecretStore, objs: Iterable[ManagedObject], resolve: Resolve) -> None:
    """Put a value in `store` for every secret the objects reference that the store cannot generate and no
    object produces (a harness may reference credentials issued elsewhere)."""
    objs = list(objs)
    produced = {name for o in objs for name in o.produces}
    for obj in objs:
        for name in secret_refs(obj.spec):
            if name not in produced and generator_for(name) is None and store.peek(name) is None:
                store.put(name, str(resolve({"v": secret_ref(name)})["v"]))


def plan_live(
    backend: Backend,
    store: StateStore,
    secrets: SecretStore,
    objs: Iterable[ManagedObject],
) -> tuple[Plan, Credentials, LiveState]:
    """What the pipeline does before an apply: digest consumed secrets, observe live state scoped to desired ∪
    inventory, and plan against that baseline (producers whose outputs are missing are re-issued)."""
    provider = Provider(backend.provider)
    creds = with_credentials(DesiredState.of(objs, [provider]), secrets)
    traits = Traits.of_backends({provider: backend})
    live = observe_live({provider: backend}, store, [provider], creds.desired.objects, traits)
    plan = make_plan(
        desired=creds.desired.objects,
        current=live.baseline.objects,
        head="conformance",
        base=live.baseline.label,
        compared_against="live",
        providers=[provider],
        disabled_notes={},
        old_org={},
        new_org={},
        replace_on=lambda o: traits.of(o).replace_on,
        reissue=creds.reissue,
    )
    return plan, creds, live


def run_plan(
    plan: Plan,
    creds: Credentials,
    live: LiveState,
    backend: Backend,
    store: StateStore,
    secrets: SecretStore,
    concurrency: int = 4,
) -> RunResult:
    provider = Provider(backend.provider)
    options = ApplyOptions(concurrency={provider.value: concurrency}, default_concurrency=concurrency,
                           timeout=120.0, retries=2, backoff=0.05, backoff_max=0.2)
    return execute(plan, creds.desired.objects, {provider: backend}, store, secrets, options,
                   observed=live.observed, current=live.baseline.objects,
                   traits=Traits.of_backends({provider: backend}))


def change_of(plan: Plan, key: str) -> Change:
    found = [c for c in plan.changes if c.key == key]
    assert len(found) == 1, f"{key}: {len(found)} changes in the plan"
    return found[0]


def assert_ok(run: RunResult) -> None:
    assert run.ok and run.verified, f"the run failed: {json.dumps(run.to_dict(), indent=1)}"


def pending(plan: Plan) -> list[str]:
    return [f"{c.action.value} {c.key}: {c.reason}" for c in plan.changes if c.action is not Action.NOOP]


# Suites -------------------------------------------------------------------------------------------------


class SuiteFixtures:
    """Fixtures every suite uses. Subclass `ConformanceSuite` (and capability suites) in a `Test...` class."""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__name__.startswith("Test") and not issubclass(cls, ConformanceSuite):
            raise TypeError(f"{cls.__name__}: a capability suite runs together with ConformanceSuite")

    @pytest.fixture
    def backend(self, harness: Harness) -> Iterator[Backend]:
        instance = harness.backend()
        yield instance
        instance.close()

    @pytest.fixture
    def resolver(self, harness: Harness) -> RecordingResolver:
        return RecordingResolver(harness.resolve)

    @pytest.fixture
    def state(self, tmp_path: Path) -> Iterator[StateStore]:
        store = StateStore(tmp_path / "state")
        yield store
        store.close()

    @pytest.fixture
    def secret_store(self, tmp_path: Path) -> Iterator[SecretStore]:
        store = SecretStore(tmp_path / "state", key="")
        yield store
        store.close()


class ConformanceSuite(SuiteFixtures):
    """The promises every backend keeps, for objects of one owned type."""

    def test_declares_provider_types_and_traits(self, harness: Harness, backend: Backend) -> None:
        cls = harness.backend_class
        assert isinstance(cls.provider, Provider), f"{cls!r}.provider is {cls.provider!r}, not a Provider"
        assert isinstance(cls.types, tuple) and cls.types, "the class declares no object types"
        assert all(isinstance(t, str) and t and "/" not in t for t in cls.types), cls.types
        assert len(set(cls.types)) == len(cls.types), f"a type is declared twice: {cls.types}"
        assert isinstance(cls.traits, Mapping)
        assert set(cls.traits) <= set(cls.types), f"traits for undeclared types: {set(cls.traits) - set(cls.types)}"
        for type_, traits in cls.traits.items():
            assert isinstance(traits, TypeTraits), f"{type_}: {traits!r} is not a TypeTraits"
            for fields in (traits.replace_on, traits.write_only, traits.self_managed):
                assert isinstance(fields, frozenset) and all(isinstance(f, str) for f in fields)
            assert set(traits.still_drift) <= traits.self_managed, f"{type_}: still_drift outside self_managed"
            assert isinstance(traits.ownership, Ownership)
        # The instance agrees with its class, and the harness's objects are of a type it serves.
        assert (Provider(backend.provider), tuple(backend.types)) == (cls.provider, tuple(cls.types))
        assert dict(getattr(backend, "traits", None) or {}) == dict(cls.traits), (
            "the instance declares other traits than its class (offline plans read the class)"
        )
        obj = harness.desired("conf-declared")
        assert (obj.provider, obj.type in cls.types) == (cls.provider, True), obj.key
        assert traits_of(cls, obj.type).ownership is Ownership.OWNED, "the core suite's objects must be owned"
        assert list(secret_refs(obj.spec)), "the core suite's objects must reference a secret"

    def test_built_from_a_context(self, harness: Harness, resolver: RecordingResolver) -> None:
        """The construction contract: `Class(BackendContext)`, as the registry builds it, on the same system."""
        cls = harness.backend_class
        built = cls(harness.context())
        try:
            assert isinstance(built, Backend), f"{type(built).__name__} does not implement the Backend protocol"
            assert (Provider(built.provider), tuple(built.types)) == (cls.provider, tuple(cls.types))
            obj = harness.desired("conf-context")
            assert applied(built, obj, "create", None, resolver).outcome is Outcome.CREATED
            other = harness.backend()  # the harness's own instance sees it as ours: the context's label was used
            try:
                assert_converged(harness, other, obj, resolver.values)
            finally:
                other.close()
        finally:
            built.close()

    def test_observe_empty(self, backend: Backend) -> None:
        assert everything(backend) == {}
        assert backend.observe(type_scope(backend.types, exact=True)) == {}
        assert backend.observe(Scope({}, exact=True)) == {}

    def test_create_then_observe(self, harness: Harness, backend: Backend, resolver: RecordingResolver) -> None:
        obj = harness.desired("conf-create")
        result = applied(backend, obj, "create", None, resolver)
        assert result.outcome is Outcome.CREATED
        assert resolver.values, "the apply never resolved the object's secrets"
        seen = assert_converged(harness, backend, obj, resolver.values)
        assert set(everything(backend)) == {obj.key}
        # Identifiers and fingerprint are observed as the apply returned them.
        assert {k: seen.ids.get(k) for k in result.ids} == dict(result.ids)
        if result.fingerprint:
            assert seen.fingerprint == result.fingerprint
        assert not leaked(resolver.values, everything(backend), result.ids, result.fingerprint)

    def test_apply_twice_is_idempotent(self, harness: Harness, backend: Backend, resolver: RecordingResolver) -> None:
        obj = harness.desired("conf-twice")
        first = applied(backend, obj, "create", None, resolver)
        again = applied(backend, obj, "create", observed(backend, obj), resolver)
        assert again.outcome in (Outcome.UNCHANGED, Outcome.CONFIGURED)
        assert_converged(harness, backend, obj, resolver.values)
        update = applied(backend, obj, "update", observed(backend, obj), resolver)
        assert update.outcome in (Outcome.UNCHANGED, Outcome.CONFIGURED)
        assert_converged(harness, backend, obj, resolver.values)
        assert dict(again.ids) == dict(update.ids) == dict(first.ids), "identifiers changed with nothing to change"

    def test_update(self, harness: Harness, backend: Backend, resolver: RecordingResolver) -> None:
        first = harness.desired("conf-update", 0)
        applied(backend, first, "create", None, resolver)
        second = harness.desired("conf-update", 1)
        assert (second.key, second.hash != first.hash) == (first.key, True)
        replace_on = traits_of(harness.backend_class, first.type).replace_on
        assert change_for(second, first, replace_on).action is Action.UPDATE, "a revision must plan as an update"
        result = applied(backend, second, "update", observed(backend, first), resolver)
        assert result.outcome in (Outcome.CONFIGURED, Outcome.CREATED)
        assert_converged(harness, backend, second, resolver.values)

    def test_replace(self, harness: Harness, backend: Backend, resolver: RecordingResolver) -> None:
        first = harness.desired("conf-replace")
        applied(backend, first, "create", None, resolver)
        second = harness.replaced(first)
        if second is None:  # nothing forces re-creation: a replace (after an adoption, say) writes in place
            second = harness.desired("conf-replace", 1)
            result = applied(backend, second, "replace", observed(backend, first), resolver)
            assert result.outcome in (Outcome.CREATED, Outcome.CONFIGURED)
            assert_converged(harness, backend, second, resolver.values)
            return
        assert (second.key, second.hash != first.hash) == (first.key, True)
        replace_on = traits_of(harness.backend_class, first.type).replace_on
        assert change_for(second, first, replace_on).action is Action.REPLACE, "`replaced` must plan as a replace"
        result = applied(backend, second, "replace", observed(backend, first), resolver)
        assert result.outcome in (Outcome.CREATED, Outcome.CONFIGURED)
        assert_converged(harness, backend, second, resolver.values)

    def test_delete(self, harness: Harness, backend: Backend, resolver: RecordingResolver) -> None:
        obj = harness.desired("conf-delete")
        applied(backend, obj, "create", None, resolver)
        assert backend.delete(obj) is Outcome.DELETED
        assert obj.key not in everything(backend)
        assert backend.observe(exact(backend, obj)) == {}
        assert_removed(harness, obj.name)

    def test_delete_missing_is_success(self, harness: Harness, backend: Backend) -> None:
        obj = harness.desired("conf-missing")
        assert backend.delete(obj) in (Outcome.DELETED, Outcome.UNCHANGED)
        assert backend.delete(obj) in (Outcome.DELETED, Outcome.UNCHANGED)
        assert obj.key not in everything(backend)

    def test_create_when_present_adopts(self, harness: Harness, backend: Backend, resolver: RecordingResolver) -> None:
        """A run killed after creating, before recording: the next run's create finds it and converges."""
        obj = harness.desired("conf-adopt")
        first = applied(backend, obj, "create", None, resolver)
        restarted = harness.backend()
        try:
            again = applied(restarted, obj, "create", None, resolver)
            assert again.outcome in (Outcome.UNCHANGED, Outcome.CONFIGURED)
            assert_converged(harness, restarted, obj, resolver.values)
            assert dict(again.ids) == dict(first.ids), "adopting must keep the object, not make another"
            newer = harness.desired("conf-adopt", 1)  # the crashed run had applied an older revision
            assert applied(restarted, newer, "create", None, resolver).outcome in (
                Outcome.CONFIGURED, Outcome.CREATED,
            )
            assert_converged(harness, restarted, newer, resolver.values)
        finally:
            restarted.close()

    def test_foreign_objects_are_never_listed_or_touched(
        self, harness: Harness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        foreign = harness.desired("conf-foreign")
        harness.plant_foreign(foreign.name)
        ours = harness.desired("conf-ours")
        applied(backend, ours, "create", None, resolver)
        assert set(everything(backend)) == {ours.key}
        assert backend.observe(exact(backend, foreign)) == {}
        backend.delete(ours)
        with contextlib.suppress(PermanentError):  # a delete of what is not ours may be ignored or refused
            backend.delete(foreign)
        assert harness.foreign_intact(foreign.name)
        assert everything(backend) == {}

    def test_owned_type_refuses_a_foreign_object_under_our_name(
        self, harness: Harness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        """Owned records are never adopted from someone else: create and update fail permanently, leaving it."""
        obj = harness.desired("conf-taken")
        assert traits_of(harness.backend_class, obj.type).ownership is Ownership.OWNED
        harness.plant_foreign(obj.name)
        for action in ("create", "update", "replace"):
            with pytest.raises(PermanentError):
                backend.apply(obj, action, None, resolver)
        with contextlib.suppress(PermanentError):  # refusing is as good as ignoring: what matters is it survives
            backend.delete(obj)
        assert harness.foreign_intact(obj.name)
        assert harness.count(obj.name) == 1
        assert obj.key not in everything(backend)

    def test_exact_scope_returns_only_its_keys(
        self, harness: Harness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        a, b = harness.desired("conf-scope-a"), harness.desired("conf-scope-b")
        for obj in (a, b):
            applied(backend, obj, "create", None, resolver)
        assert set(backend.observe(exact(backend, a))) == {a.key}
        assert set(backend.observe(exact(backend, a, b))) == {a.key, b.key}
        assert backend.observe(Scope({}, exact=True)) == {}
        missing = harness.desired("conf-scope-missing")
        assert backend.observe(exact(backend, missing)) == {}
        # A backend with a list call returns all of its own (it may return more); one whose listing cannot tell
        # its own objects from others' (S3: no metadata in a listing) fetches what is named (`lists_owned`).
        listed = {a.key, b.key} if getattr(harness, "lists_owned", True) else {a.key}
        assert listed <= set(backend.observe(type_scope(backend.types, [a.key])))

    def test_through_the_executor(
        self, harness: Harness, backend: Backend, state: StateStore, secret_store: SecretStore
    ) -> None:
        """Create, verify, re-plan against live state (nothing to do), then prune: the core on this backend."""
        obj = harness.desired("conf-exec")
        seed_secrets(secret_store, [obj], harness.resolve)
        plan, creds, live = plan_live(backend, state, secret_store, [obj])
        assert change_of(plan, obj.key).action is Action.CREATE
        run = run_plan(plan, creds, live, backend, state, secret_store)
        assert_ok(run)
        assert [s.key for s in run.created] == [obj.key]
        assert state.inventory()[obj.key].hash == creds.desired.objects[obj.key].with_consumed(
            consumed_digest(secret_refs(obj.spec), secret_store.peek)).hash
        again, _, _ = plan_live(backend, state, secret_store, [obj])
        assert pending(again) == [], "a plan against live state right after an apply must be empty"
        values = [v for n in secret_refs(obj.spec) if (v := secret_store.peek(n))]
        assert values and not leaked(values, plan.to_dict(), again.to_dict(), run.to_dict(), everything(backend))
        prune, creds, live = plan_live(backend, state, secret_store, [])
        assert change_of(prune, obj.key).action is Action.DELETE
        assert_ok(run_plan(prune, creds, live, backend, state, secret_store))
        assert everything(backend) == {}
        assert_removed(harness, obj.name)
        assert obj.key not in state.inventory()


class MultiTypeSuite(SuiteFixtures):
    """A backend serving several object types: each type round-trips, names are per type, scopes are by type."""

    def _samples(self, harness: MultiTypeHarness, name: str) -> list[ManagedObject]:
        samples = [harness.sample(t, name) for t in harness.backend_class.types]
        assert [o.type for o in samples] == list(harness.backend_class.types)
        return samples

    def test_declares_several_types(self, harness: MultiTypeHarness) -> None:
        assert len(harness.backend_class.types) >= 2

    def test_every_type_round_trips(
        self, harness: MultiTypeHarness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        for obj in self._samples(harness, "conf-each"):
            traits = traits_of(harness.backend_class, obj.type)
            assert applied(backend, obj, "create", None, resolver).outcome is Outcome.CREATED, obj.key
            seen = backend.observe(exact(backend, obj))
            assert set(seen) == {obj.key}
            assert mismatch(obj, seen[obj.key], traits) == "", obj.key
            assert not leaked(resolver.values, seen)
            assert backend.delete(obj) is Outcome.DELETED
            assert backend.observe(exact(backend, obj)) == {}

    def test_one_name_in_several_types(
        self, harness: MultiTypeHarness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        samples = self._samples(harness, "conf-same")
        for obj in samples:
            applied(backend, obj, "create", None, resolver)
        assert set(everything(backend)) == {o.key for o in samples}
        gone, kept = samples[0], samples[1:]
        backend.delete(gone)
        assert set(everything(backend)) == {o.key for o in kept}
        for obj in kept:
            assert mismatch(obj, observed(backend, obj), traits_of(harness.backend_class, obj.type)) == ""

    def test_scope_is_by_type(self, harness: MultiTypeHarness, backend: Backend, resolver: RecordingResolver) -> None:
        samples = self._samples(harness, "conf-typed")
        for obj in samples:
            applied(backend, obj, "create", None, resolver)
        for obj in samples:
            assert set(backend.observe(type_scope([obj.type], [obj.key], exact=True))) == {obj.key}
            assert set(backend.observe(type_scope([obj.type], exact=True))) == set(), obj.type
            listed = backend.observe(type_scope([obj.type]))
            assert obj.key in listed


class ProducerConsumerSuite(SuiteFixtures):
    """Outputs: a producer's apply returns its credentials; the executor stores them, consumers carry their
    digest, and a lost credential is issued again and every consumer rewritten with the new value."""

    def test_producer_returns_its_outputs(
        self, harness: ProducerHarness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        producer = harness.producer("conf-producer")
        assert producer.produces, "a producer must declare what it produces"
        first = applied(backend, producer, "create", None, resolver)
        assert set(first.secrets) == set(producer.produces)
        # Applying again issues again (how a lost output is recovered), and the value is never observed.
        second = applied(backend, producer, "update", observed(backend, producer), resolver)
        assert set(second.secrets) == set(producer.produces)
        outputs = [*first.secrets.values(), *second.secrets.values()]
        assert not leaked(outputs, everything(backend), first.ids, second.ids, first.fingerprint)
        assert not leaked(outputs, repr(first), repr(second)), "an output shows in the result's repr"

    def test_lost_output_is_reissued_and_consumers_rewritten(
        self, harness: ProducerHarness, backend: Backend, state: StateStore, secret_store: SecretStore
    ) -> None:
        producer = harness.producer("conf-issuer")
        token = producer.produces[0]
        consumer = harness.consumer("conf-holder", token)
        assert token in set(secret_refs(consumer.spec))
        objs = [producer, consumer]
        seed_secrets(secret_store, objs, harness.resolve)

        plan1, creds, live = plan_live(backend, state, secret_store, objs)
        assert {c.key: c.action for c in plan1.changes} == {producer.key: Action.CREATE, consumer.key: Action.CREATE}
        run1 = run_plan(plan1, creds, live, backend, state, secret_store)
        assert_ok(run1)
        old = secret_store.peek(token)
        assert old, f"the executor did not store the output {token}"
        assert old in json.dumps(_plain(harness.written(consumer))), "the consumer was written without the output"
        with_old = consumer.with_consumed(consumed_digest(secret_refs(consumer.spec), secret_store.peek))
        assert state.inventory()[consumer.key].hash == with_old.hash != consumer.hash

        secret_store.delete(token)  # the credential is lost
        plan2, creds, live = plan_live(backend, state, secret_store, objs)
        reissue = change_of(plan2, producer.key)
        assert reissue.action is Action.UPDATE and "missing" in reissue.reason and token in reissue.reason
        assert change_of(plan2, consumer.key).action is Action.UPDATE
        run2 = run_plan(plan2, creds, live, backend, state, secret_store)
        assert_ok(run2)
        new = secret_store.peek(token)
        assert new and new != old, "the output was not issued again"
        written = json.dumps(_plain(harness.written(consumer)))
        rewritten = new in written and old not in written  # a bool: a failing assertion must not print a secret
        assert rewritten, "the consumer was not rewritten with the new value"
        with_new = consumer.with_consumed(consumed_digest(secret_refs(consumer.spec), secret_store.peek))
        assert state.inventory()[consumer.key].hash == with_new.hash != with_old.hash
        assert observed(backend, consumer) is not None

        plan3, _, _ = plan_live(backend, state, secret_store, objs)
        assert pending(plan3) == [], "converged: nothing left to do"
        assert not leaked([old, new], plan1.to_dict(), plan2.to_dict(), plan3.to_dict(), run1.to_dict(),
                          run2.to_dict(), everything(backend), state.inventory()[consumer.key].to_dict())


class SharedRecordSuite(SuiteFixtures):
    """Shared records: we add, change and remove only our entries; everyone else's stay; a record someone
    else made is adopted; and the executor never runs two changes to one record at the same time."""

    def test_shared_type_is_declared(self, harness: SharedHarness) -> None:
        entry = harness.entry("conf-decl", "conf-record")
        assert entry.shares == "conf-record"
        assert entry.type in harness.backend_class.types
        assert traits_of(harness.backend_class, entry.type).ownership is Ownership.SHARED

    def test_foreign_entry_survives_create_update_delete(
        self, harness: SharedHarness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        record = "conf-rec-keep"
        harness.plant_foreign_entry(record, "someone-elses")
        ours = harness.entry("conf-mine", record)
        assert applied(backend, ours, "create", None, resolver).outcome is Outcome.CREATED
        assert harness.foreign_entry_intact(record, "someone-elses")
        newer = harness.entry("conf-mine", record, 1)
        assert newer.hash != ours.hash
        applied(backend, newer, "update", observed(backend, ours), resolver)
        assert harness.foreign_entry_intact(record, "someone-elses")
        assert mismatch(newer, observed(backend, newer), traits_of(harness.backend_class, newer.type)) == ""
        assert set(everything(backend)) == {newer.key}, "someone else's entry must never be listed"
        assert backend.delete(newer) is Outcome.DELETED
        assert harness.foreign_entry_intact(record, "someone-elses")
        assert everything(backend) == {}

    def test_record_made_by_someone_else_is_adopted(
        self, harness: SharedHarness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        record = "conf-rec-theirs"
        harness.plant_foreign_entry(record, "first")
        harness.plant_foreign_entry(record, "second")
        entries = [harness.entry(f"conf-join-{i}", record) for i in range(2)]
        for obj in entries:
            assert applied(backend, obj, "create", None, resolver).outcome is Outcome.CREATED
        assert set(everything(backend)) == {o.key for o in entries}
        for obj in entries:
            assert mismatch(obj, observed(backend, obj), traits_of(harness.backend_class, obj.type)) == ""
        assert harness.foreign_entry_intact(record, "first") and harness.foreign_entry_intact(record, "second")

    def test_delete_removes_only_our_entry(
        self, harness: SharedHarness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        record = "conf-rec-del"
        harness.plant_foreign_entry(record, "theirs")
        a, b = harness.entry("conf-del-a", record), harness.entry("conf-del-b", record)
        for obj in (a, b):
            applied(backend, obj, "create", None, resolver)
        assert backend.delete(a) is Outcome.DELETED
        assert set(everything(backend)) == {b.key}
        assert harness.foreign_entry_intact(record, "theirs")
        assert backend.delete(a) in (Outcome.DELETED, Outcome.UNCHANGED)  # already gone: still success
        assert set(everything(backend)) == {b.key}

    def test_changes_to_one_record_never_overlap(
        self, harness: SharedHarness, state: StateStore, secret_store: SecretStore
    ) -> None:
        """Executor, concurrency 8: entries of one record one at a time, different records side by side."""
        slow = Instrumented(harness.backend(), latency=0.05)
        try:
            objs = [harness.entry(f"conf-par-{r}-{i}", f"conf-rec-{r}") for r in ("a", "b") for i in range(4)]
            seed_secrets(secret_store, objs, harness.resolve)
            plan, creds, live = plan_live(slow, state, secret_store, objs)
            assert [c.action for c in plan.changes] == [Action.CREATE] * len(objs)
            assert_ok(run_plan(plan, creds, live, slow, state, secret_store, concurrency=8))
            assert slow.overlaps == 0, f"{slow.overlaps} writes to one record ran at the same time"
            assert slow.peak_records == 2, "entries of different records should run concurrently"
            assert set(everything(slow)) == {o.key for o in objs}
            prune, creds, live = plan_live(slow, state, secret_store, [])
            assert [c.action for c in prune.changes] == [Action.DELETE] * len(objs)
            assert_ok(run_plan(prune, creds, live, slow, state, secret_store, concurrency=8))
            assert slow.overlaps == 0, f"{slow.overlaps} deletes from one record ran at the same time"
            assert everything(slow) == {}
        finally:
            slow.close()


class WriteOnlySuite(SuiteFixtures):
    """Write-only fields are written, never observed, never drift — with or without a recorded hash — and a
    change to one in git is still applied."""

    def _object(self, harness: WriteOnlyHarness, name: str, revision: int = 0) -> tuple[ManagedObject, TypeTraits]:
        obj = harness.with_write_only(name, revision)
        traits = traits_of(harness.backend_class, obj.type)
        assert traits.write_only, f"{obj.type} declares no write-only field"
        assert traits.write_only <= set(obj.spec), "the harness's object must set every write-only field"
        return obj, traits

    def test_observe_never_returns_write_only_fields(
        self, harness: WriteOnlyHarness, backend: Backend, resolver: RecordingResolver
    ) -> None:
        obj, traits = self._object(harness, "conf-wo")
        applied(backend, obj, "create", None, resolver)
        for each in (*everything(backend).values(), *backend.observe(exact(backend, obj)).values()):
            assert not traits.write_only & set(each.spec), f"{each.key} shows write-only {traits.write_only}"
        seen = observed(backend, obj)
        assert seen is not None and not leaked(resolver.values, seen)
        # Only the write-only fields are missing: everything else is observed as written.
        visible = {k: v for k, v in obj.spec.items() if k not in traits.write_only}
        assert spec_matches(visible, seen.spec, traits.self_managed)

    @pytest.mark.parametrize("keeps_hash", [True, False], ids=["hash", "hashless"])
    def test_live_plan_after_apply_is_empty(
        self, harness: WriteOnlyHarness, keeps_hash: bool, state: StateStore, secret_store: SecretStore
    ) -> None:
        backend = harness.backend() if keeps_hash else harness.hashless_backend()
        try:
            obj, traits = self._object(harness, "conf-wo-plan")
            seed_secrets(secret_store, [obj], harness.resolve)
            plan, creds, live = plan_live(backend, state, secret_store, [obj])
            assert_ok(run_plan(plan, creds, live, backend, state, secret_store))
            seen = observed(backend, obj)
            hashed = keeps_hash and getattr(harness, "records_hash", True)  # a hashless system: never a hash
            assert seen is not None and (seen.recorded_hash is None) is (not hashed)
            assert not traits.write_only & set(seen.spec)
            again, _, _ = plan_live(backend, state, secret_store, [obj])
            assert pending(again) == [], "a write-only field that cannot be observed must not show as drift"

            changed, _ = self._object(harness, "conf-wo-plan", 1)  # a new value for a write-only field
            plan, creds, live = plan_live(backend, state, secret_store, [changed])
            change = change_of(plan, obj.key)
            assert change.action is Action.UPDATE, "a changed write-only field must still be applied"
            assert {d.path.split(".")[0] for d in change.diff} <= traits.write_only
            assert_ok(run_plan(plan, creds, live, backend, state, secret_store))
            final, _, _ = plan_live(backend, state, secret_store, [changed])
            assert pending(final) == []
        finally:
            backend.close()
