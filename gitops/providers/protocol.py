"""The backend protocol: observe what exists, apply one change, delete one object — and the error taxonomy.

Every adapter to the outside world (docker, kubernetes, matrix, storage, gateway, and the in-memory
reference backend) implements `Backend`. The core (`gitops/`) never imports an adapter module directly:
it asks `gitops.providers.registry` for one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from gitops.objects import ManagedObject, Provider

# Turns a spec containing `secret://name` references into one with the values (generating them on first use).
Resolve = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class TransientError(Exception):
    """Worth retrying: a timeout, a 5xx, a 429, a conflict. `retry_after` (seconds) when the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help: a 4xx, a refused spec, a missing image. Stops this branch of the graph only."""


class Outcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Observed:
    """One object as it exists. `recorded_hash` is the desired-spec hash the backend stored on the object
    when it applied it (a label or metadata), or None where the store cannot keep one; `spec` is what can be
    seen, in the same shape as the desired spec as far as it is observable (secrets never included)."""

    key: str
    spec: Mapping[str, Any]
    recorded_hash: str | None = None


@runtime_checkable
class Backend(Protocol):
    """A provider adapter. Methods are synchronous; the executor runs them in worker threads."""

    provider: Provider
    types: tuple[str, ...]

    def observe(self) -> dict[str, Observed]:
        """Everything this reconciler instance manages, listed by label / prefix / alias:
        one list call per object type, never one call per object."""
        ...

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> Outcome:
        """Carry out the plan's `action` ("create", "update" or "replace") so `obj` exists as specified.
        Idempotent: applying twice, or after a crash half-way, converges with no duplicates (a create that
        finds the object already there adopts and updates it)."""
        ...

    def delete(self, obj: ManagedObject) -> Outcome:
        """Remove the object. Deleting what is already gone is success."""
        ...

    def close(self) -> None:
        ...
