"""Backend registry: backend names → classes, built-ins imported lazily by dotted path, third parties by entry point.

Built-in names: `memory` (the in-memory reference backend), `docker`, `kubernetes` (runtime), `matrix`,
`storage` and `gateway`. A module is imported only when its backend is asked for, so a missing optional
dependency of one backend never breaks another.

Third-party backends register a class under the entry-point group `hiclaw_gitops.backends`, for example in
their `pyproject.toml`:

    [project.entry-points."hiclaw_gitops.backends"]
    nomad = "hiclaw_nomad.backend:NomadBackend"

and are then selected by name like a built-in (`runtime: {backend: nomad}`). A built-in name cannot be
taken by an entry point; `register(..., clobber=True)` can replace one (tests, embedding applications).
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from importlib.metadata import entry_points
from typing import Any

from gitops.providers.protocol import Backend, BackendClass, BackendContext

ENTRY_POINT_GROUP = "hiclaw_gitops.backends"

# name -> "module:Class"; modules may not exist yet (a backend still being written is simply unavailable).
BUILTIN: dict[str, str] = {
    "memory": "backends.memory:MemoryBackend",
    "docker": "backends.docker:DockerBackend",
    "kubernetes": "backends.kubernetes:KubernetesBackend",
    "matrix": "backends.matrix:MatrixBackend",
    "storage": "backends.storage:StorageBackend",
    "gateway": "backends.gateway:GatewayBackend",
}

_registered: dict[str, type[Any] | str] = {}
_lock = threading.Lock()


class BackendUnavailable(LookupError):
    """No backend by this name, or its module cannot be imported; the message says which and why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"backend {name!r} is not available: {reason}")
        self.name = name
        self.reason = reason


def register(name: str, target: type[Any] | str, *, clobber: bool = False) -> None:
    """Add a backend class (or a lazy `module:Class` path) under `name`. Registering the class a name already
    points to (a built-in module registering itself on import) is allowed; taking another's name needs clobber."""
    with _lock:
        existing = _registered.get(name, BUILTIN.get(name))
        if existing is not None and _path_of(existing) != _path_of(target) and not clobber:
            raise ValueError(f"backend name {name!r} is already taken by {_path_of(existing)} (pass clobber=True)")
        _registered[name] = target


def _path_of(target: type[Any] | str) -> str:
    if isinstance(target, str):
        module, attr = _split(target)
        return f"{module}:{attr}"
    return f"{target.__module__}:{target.__qualname__}"


def unregister(name: str) -> None:
    with _lock:
        _registered.pop(name, None)


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _target(name: str) -> type[Any] | str:
    with _lock:
        if name in _registered:
            return _registered[name]
    if name in BUILTIN:
        return BUILTIN[name]
    third_party = _entry_points()
    if name in third_party:
        return third_party[name]
    raise BackendUnavailable(name, f"no such backend (known: {', '.join(names())})")


def names() -> list[str]:
    """Every backend name known: built-in, registered and installed by entry point (available or not)."""
    with _lock:
        registered = set(_registered)
    return sorted(set(BUILTIN) | registered | set(_entry_points()))


def _split(path: str) -> tuple[str, str]:
    module, sep, attr = path.partition(":")
    if not sep:  # also accept "package.module.Class"
        module, _, attr = path.rpartition(".")
    return module, attr


def is_available(name: str) -> bool:
    """Whether `name` resolves to an importable module, without importing it."""
    try:
        target = _target(name)
    except BackendUnavailable:
        return False
    if not isinstance(target, str):
        return True
    module, _ = _split(target)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def get_class(name: str) -> BackendClass:
    """The backend class registered under `name`, imported now; BackendUnavailable if it cannot be."""
    target = _target(name)
    if isinstance(target, str):
        module_name, attr = _split(target)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendUnavailable(name, f"cannot import {module_name} ({exc})") from None
        try:
            target = getattr(module, attr)
        except AttributeError:
            raise BackendUnavailable(name, f"{module_name} has no {attr}") from None
        if not isinstance(target, type):
            raise BackendUnavailable(name, f"{module_name}:{attr} is not a class")
    cls: BackendClass = target  # type: ignore[assignment]  # the protocol's declarations, checked by conformance
    return cls


def create(name: str, ctx: BackendContext | None = None) -> Backend:
    """An instance of the backend `name`, built with `ctx` (the construction contract)."""
    return get_class(name)(ctx or BackendContext())
