"""The backend registry: built-ins by name (lazily), third parties by entry point, clear errors otherwise."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from backends.memory import MemoryBackend
from gitops.objects import Provider
from gitops.providers import registry
from gitops.providers.protocol import Backend, BackendContext
from gitops.settings.model import RuntimeSettings


def test_builtin_names_are_known() -> None:
    assert {"memory", "docker", "kubernetes", "matrix", "storage", "gateway"} <= set(registry.names())
    assert registry.ENTRY_POINT_GROUP == "hiclaw_gitops.backends"


def test_memory_is_created_by_name_with_a_context() -> None:
    backend = registry.create("memory", BackendContext(settings=RuntimeSettings(instance="test-instance")))
    assert isinstance(backend, MemoryBackend) and isinstance(backend, Backend)
    assert backend.provider is Provider.RUNTIME and backend.instance == "test-instance"
    assert registry.get_class("memory") is MemoryBackend


def test_unknown_and_unimportable_backends_say_why() -> None:
    with pytest.raises(registry.BackendUnavailable, match="'nope' is not available: no such backend"):
        registry.get_class("nope")
    registry.register("ghost", "backends.no_such_module:Ghost")
    try:
        assert not registry.is_available("ghost")
        with pytest.raises(registry.BackendUnavailable, match=r"cannot import backends\.no_such_module"):
            registry.create("ghost")
    finally:
        registry.unregister("ghost")
    assert registry.is_available("memory")


def test_names_cannot_be_taken_silently() -> None:
    class Other(MemoryBackend):
        pass

    with pytest.raises(ValueError, match="already taken"):
        registry.register("memory", Other)
    registry.register("memory", MemoryBackend)  # the class the built-in name points to: fine (self-registration)
    registry.register("memory", Other, clobber=True)
    try:
        assert registry.get_class("memory") is Other
    finally:
        registry.unregister("memory")
    assert registry.get_class("memory") is MemoryBackend


def test_third_party_backends_come_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("nomad", "backends.memory:MemoryBackend", registry.ENTRY_POINT_GROUP)]

    def fake(group: str, **_: Any) -> list[EntryPoint]:
        return points if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake)
    assert "nomad" in registry.names()
    assert registry.is_available("nomad")
    assert registry.get_class("nomad") is MemoryBackend
