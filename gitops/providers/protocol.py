"""The backend protocol: what a provider adapter is, declares and returns — the contract between core and backends.

Every adapter to the outside world (docker, kubernetes, matrix, storage, gateway, and the in-memory reference
backend) lives in `backends/` and implements `Backend`; the core never imports an adapter module, it asks
`gitops.providers.registry` for a class by name and builds it with a `BackendContext`.

What differs between backends is declared on the class, so the core can read it without connecting:
`provider`, `types`, and `traits` — per object type the fields that force a replace, the write-only fields
(never observable, left out of comparison), the fields an agent may change itself (not enforced without
`enforce-state`), what an absent object means, and the ownership mode (owned or shared records).

An apply returns an `ApplyResult`: its outcome and its *outputs* — produced credentials (the executor stores
them in the secret store; they never reach a plan, a log or the inventory), server-assigned identifiers (room
IDs, user IDs) and a fingerprint (ETag, resourceVersion, event ID), both kept in the inventory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gitops.objects import ManagedObject, Provider
from gitops.providers.errors import ConflictError, PermanentError, TransientError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ApplyResult",
    "Backend",
    "BackendClass",
    "BackendContext",
    "ConflictError",
    "Observed",
    "Outcome",
    "Ownership",
    "PermanentError",
    "Resolve",
    "Scope",
    "SecretReader",
    "TransientError",
    "TypeTraits",
]

# Turns a spec containing `secret://name` references into one with the values (generating them on first use).
Resolve = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class Outcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"


class Ownership(StrEnum):
    """How a type's remote records are held.

    `owned`: the record is ours alone; a record under our name that we did not create is refused, never
    adopted. `shared`: several managed objects (and other people) write entries of one remote record (every
    agent's grant on one gateway route, every member of one room); an object adds and removes only its own
    entry, keeping everything else, and an existing record is adopted by merging.
    """

    OWNED = "owned"
    SHARED = "shared"


@dataclass(frozen=True, slots=True)
class TypeTraits:
    """What the core must know about one object type of a backend, declared on the class.

    - `replace_on`: top-level spec fields whose change cannot be applied in place (delete and create again).
    - `write_only`: top-level spec fields the backend can write but never read back (a password, a room
      preset, `is_direct`); they are left out of every comparison with what is observed.
    - `self_managed`: top-level fields the running thing may change itself (an agent sleeping and waking);
      without `enforce_state` in the spec the last applied value stands. `still_drift` lists, per such
      field, observed values that are not the agent's doing and do show (a container created, never started).
    - `absent_when`: field → value for which the applied state is *no* object (an agent `Stopped`).
    - `ownership`: owned or shared records (see `Ownership`).
    """

    replace_on: frozenset[str] = frozenset()
    write_only: frozenset[str] = frozenset()
    self_managed: frozenset[str] = frozenset()
    still_drift: Mapping[str, frozenset[str]] = field(default_factory=dict)
    absent_when: Mapping[str, str] = field(default_factory=dict)
    ownership: Ownership = Ownership.OWNED

    def absent_by_design(self, spec: Mapping[str, Any]) -> bool:
        return any(spec.get(k) == v for k, v in self.absent_when.items())


DEFAULT_TRAITS = TypeTraits()
ENFORCE_FIELD = "enforce_state"  # in a spec: the agent's own state changes are drift (gitops.hiclaw.io/enforce-state)


@dataclass(frozen=True, slots=True)
class Observed:
    """One object as it exists. `recorded_hash` is the desired hash the backend stored on the object when it
    applied it (a label or metadata), or None where the store cannot keep one; `spec` is what can be seen, in
    the same shape as the desired spec as far as it is observable (never a secret, never a write-only field);
    `ids` and `fingerprint` as an apply would return them."""

    key: str
    spec: Mapping[str, Any]
    recorded_hash: str | None = None
    ids: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class Scope:
    """What an observation is for: per object type, the names the engine cares about (desired ∪ inventory).

    A backend with a list call lists each type once (by label, prefix or alias) and may return more of its own
    objects than asked — the engine needs those to adopt what a killed run created. With `exact` (verify after
    apply) only these keys are wanted; a backend without a list call fetches exactly these.
    """

    names: Mapping[str, frozenset[str]]
    exact: bool = False

    @classmethod
    def of(cls, keys: Iterable[str], provider: Provider, *, exact: bool = False) -> Scope:
        names: dict[str, set[str]] = {}
        prefix = provider.value + "/"
        for key in keys:
            if key.startswith(prefix):
                _, type_, name = key.split("/", 2)
                names.setdefault(type_, set()).add(name)
        return cls({t: frozenset(n) for t, n in names.items()}, exact)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self.names))

    def wants(self, key: str) -> bool:
        _, type_, name = key.split("/", 2)
        return name in self.names.get(type_, ())


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one apply did and produced. `secrets` holds produced credentials by secret name (only names the
    object declares in `produces`); `ids` server-assigned identifiers; `fingerprint` the record's version."""

    outcome: Outcome
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    ids: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str = ""


class SecretReader(Protocol):
    """What a backend may ask of the secret store: a stored value (e.g. an account's password to log in)."""

    def get(self, name: str) -> str: ...


@dataclass(frozen=True, slots=True)
class BackendContext:
    """Everything a backend is built with — the one construction contract.

    `settings` is the backend's own settings section; `secrets` reads stored credentials (None offline);
    `http` makes an `httpx.Client` (tests hand in one with their own transport); `log` is a logger under the
    redacting logger; `instance` is the ownership label this reconciler writes on everything it creates.
    """

    settings: Any = None
    secrets: SecretReader | None = None
    http: Callable[..., httpx.Client] | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hiclaw_gitops.backend"))
    instance: str = "hiclaw-gitops"

    def client(self, **kw: Any) -> httpx.Client:
        if self.http is not None:
            return self.http(**kw)
        import httpx

        return httpx.Client(**kw)


@runtime_checkable
class Backend(Protocol):
    """A provider adapter. Methods are synchronous; the executor runs them in worker threads."""

    provider: Provider
    types: tuple[str, ...]

    def observe(self, scope: Scope) -> dict[str, Observed]:
        """Our objects of the scope's types: one list call per type where the API has one, never one call per
        object; objects of other owners never appear; no secret and no write-only field in any spec."""
        ...

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        """Carry out the plan's `action` ("create", "update" or "replace") so `obj` exists as specified.
        Idempotent: applying twice, or after a crash half-way, converges with no duplicates (a create that
        finds its own object already there adopts and updates it)."""
        ...

    def delete(self, obj: ManagedObject) -> Outcome:
        """Remove the object (for a shared type: only our entry of the record). Already gone is success."""
        ...

    def close(self) -> None: ...


class BackendClass(Protocol):
    """A backend class as the registry and the core see it: declarations readable without constructing."""

    provider: Provider
    types: tuple[str, ...]
    traits: Mapping[str, TypeTraits]

    def __call__(self, ctx: BackendContext) -> Backend: ...


def traits_of(cls: Any, type_: str) -> TypeTraits:
    """The traits a backend class declares for `type_` (defaults when it declares none)."""
    table: Mapping[str, TypeTraits] = getattr(cls, "traits", None) or {}
    return table.get(type_, DEFAULT_TRAITS)


__all__ += ["DEFAULT_TRAITS", "ENFORCE_FIELD", "traits_of"]
