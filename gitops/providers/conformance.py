"""The conformance suite every backend passes: the Backend protocol's promises, as reusable pytest tests.

Use it from a test module by subclassing `ConformanceSuite` and providing a `harness` fixture that returns a
`Harness` for the backend under test (the same harness per test; clean up in the fixture):

    class TestMemoryConformance(ConformanceSuite):
        @pytest.fixture
        def harness(self) -> Harness:
            return MemoryHarness()

The suite is generic over object types: the harness says what a desired object of its backend looks like
(`desired`), how to change it in place (`revision`) and in a way that forces re-creation (`replaced`), how
to plant an object someone else owns (`plant_foreign`), and how many physical objects carry one identity
(`count`, the duplicate check no observation can make since observations are keyed by identity). A harness
whose backend keeps no hash on its objects sets `records_hash = False`; otherwise every observation after an
apply must carry the applied object's hash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import pytest

from gitops.objects import ManagedObject
from gitops.providers.protocol import Backend, Observed, Outcome, PermanentError, Resolve


class Harness(Protocol):
    """What the suite needs to know about one backend."""

    def backend(self) -> Backend:
        """A fresh backend instance on the shared system (several may exist at once, as after a restart)."""
        ...

    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        """A desired object named `name`. Revisions differ by a change the backend applies as an `update`."""
        ...

    def replaced(self, obj: ManagedObject) -> ManagedObject:
        """`obj` with a change the backend applies as a `replace` (it must be re-created)."""
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


def observed(backend: Backend, key: str) -> Observed | None:
    return backend.observe().get(key)


def assert_converged(harness: Harness, backend: Backend, obj: ManagedObject) -> Observed:
    """`obj` is observed exactly once, carrying its hash (where the backend records one)."""
    seen = observed(backend, obj.key)
    assert seen is not None, f"{obj.key} not observed after apply"
    if getattr(harness, "records_hash", True) or seen.recorded_hash is not None:
        assert seen.recorded_hash == obj.hash, f"{obj.key}: recorded {seen.recorded_hash}, applied {obj.hash}"
    assert harness.count(obj.name) == 1, f"{obj.key}: {harness.count(obj.name)} objects, expected exactly one"
    return seen


class ConformanceSuite:
    """Subclass in a test module (named Test...) and provide the `harness` fixture."""

    @pytest.fixture
    def backend(self, harness: Harness) -> Iterator[Backend]:
        instance = harness.backend()
        yield instance
        instance.close()

    def test_declares_provider_and_types(self, backend: Backend) -> None:
        assert backend.provider is not None
        assert backend.types and all(isinstance(t, str) for t in backend.types)

    def test_observe_empty(self, backend: Backend) -> None:
        assert backend.observe() == {}

    def test_create_then_observe(self, harness: Harness, backend: Backend) -> None:
        obj = harness.desired("conf-create")
        assert backend.apply(obj, "create", None, harness.resolve) is Outcome.CREATED
        seen = assert_converged(harness, backend, obj)
        assert seen.key == obj.key
        assert set(backend.observe()) == {obj.key}

    def test_apply_twice_is_idempotent(self, harness: Harness, backend: Backend) -> None:
        obj = harness.desired("conf-twice")
        backend.apply(obj, "create", None, harness.resolve)
        again = backend.apply(obj, "create", observed(backend, obj.key), harness.resolve)
        assert again in (Outcome.UNCHANGED, Outcome.CONFIGURED)
        assert_converged(harness, backend, obj)
        assert backend.apply(obj, "update", observed(backend, obj.key), harness.resolve) in (
            Outcome.UNCHANGED, Outcome.CONFIGURED,
        )
        assert_converged(harness, backend, obj)

    def test_update(self, harness: Harness, backend: Backend) -> None:
        first = harness.desired("conf-update", 0)
        backend.apply(first, "create", None, harness.resolve)
        second = harness.desired("conf-update", 1)
        assert second.hash != first.hash
        outcome = backend.apply(second, "update", observed(backend, first.key), harness.resolve)
        assert outcome in (Outcome.CONFIGURED, Outcome.CREATED)
        assert_converged(harness, backend, second)

    def test_replace(self, harness: Harness, backend: Backend) -> None:
        first = harness.desired("conf-replace")
        backend.apply(first, "create", None, harness.resolve)
        second = harness.replaced(first)
        assert (second.key, second.hash != first.hash) == (first.key, True)
        assert backend.apply(second, "replace", observed(backend, first.key), harness.resolve) in (
            Outcome.CREATED, Outcome.CONFIGURED,
        )
        assert_converged(harness, backend, second)

    def test_delete(self, harness: Harness, backend: Backend) -> None:
        obj = harness.desired("conf-delete")
        backend.apply(obj, "create", None, harness.resolve)
        assert backend.delete(obj) is Outcome.DELETED
        assert obj.key not in backend.observe()
        assert harness.count(obj.name) == 0

    def test_delete_missing_is_success(self, harness: Harness, backend: Backend) -> None:
        obj = harness.desired("conf-missing")
        assert backend.delete(obj) in (Outcome.DELETED, Outcome.UNCHANGED)
        assert obj.key not in backend.observe()

    def test_create_when_present_adopts(self, harness: Harness, backend: Backend) -> None:
        """A run killed after creating, before recording: the next run's create finds it and converges."""
        obj = harness.desired("conf-adopt")
        backend.apply(obj, "create", None, harness.resolve)
        restarted = harness.backend()
        try:
            assert restarted.apply(obj, "create", None, harness.resolve) in (Outcome.UNCHANGED, Outcome.CONFIGURED)
            assert_converged(harness, restarted, obj)
            newer = harness.desired("conf-adopt", 1)  # the crashed run had applied an older revision
            restarted.apply(newer, "create", None, harness.resolve)
            assert_converged(harness, restarted, newer)
        finally:
            restarted.close()

    def test_foreign_objects_are_never_listed_or_touched(self, harness: Harness, backend: Backend) -> None:
        foreign = harness.desired("conf-foreign")
        harness.plant_foreign(foreign.name)
        ours = harness.desired("conf-ours")
        backend.apply(ours, "create", None, harness.resolve)
        assert set(backend.observe()) == {ours.key}
        backend.delete(ours)
        with contextlib.suppress(PermanentError):  # a delete of what is not ours may be ignored or refused
            backend.delete(foreign)
        assert harness.foreign_intact(foreign.name)
        assert backend.observe() == {}

    def test_name_taken_by_foreign_object(self, harness: Harness, backend: Backend) -> None:
        """A create that collides with someone else's object fails permanently and leaves it alone."""
        obj = harness.desired("conf-taken")
        harness.plant_foreign(obj.name)
        with pytest.raises(PermanentError):
            backend.apply(obj, "create", None, harness.resolve)
        with contextlib.suppress(PermanentError):  # refusing is as good as ignoring: what matters is it survives
            backend.delete(obj)
        assert harness.foreign_intact(obj.name)
        assert obj.key not in backend.observe()


def secret_resolver(prefix: str = "s3cr3t-value-for-") -> Resolve:
    """A resolver replacing every `secret://name` with a recognisable value (to check none leaks)."""
    from gitops.objects import SECRET_PREFIX

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
