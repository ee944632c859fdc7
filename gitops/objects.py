"""Managed objects: the concrete things the org chart implies, keyed `provider/type/name`.

Desired state is a set of these (built by `gitops.compile`); baselines produce the same shape for what
exists. Specs are plain JSON data. Secret values never appear in a spec: a credential is written as a
`secret_ref(...)` marker string that only the applier resolves against the secret store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SECRET_PREFIX = "secret://"


class Provider(StrEnum):
    RUNTIME = "runtime"
    MATRIX = "matrix"
    STORAGE = "storage"
    GATEWAY = "gateway"


def secret_ref(name: str) -> str:
    """A reference to a generated credential in the secret store, e.g. `secret://agent/alice/matrix-password`."""
    return SECRET_PREFIX + name


def secret_refs(value: Any) -> Iterator[str]:
    """Every secret name referenced anywhere inside a spec."""
    if isinstance(value, str):
        start = value.find(SECRET_PREFIX)
        while start != -1:
            end = start + len(SECRET_PREFIX)
            while end < len(value) and (value[end].isalnum() or value[end] in "/-_."):
                end += 1
            yield value[start + len(SECRET_PREFIX) : end]
            start = value.find(SECRET_PREFIX, end)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from secret_refs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from secret_refs(v)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]


def make_key(provider: Provider | str, type_: str, name: str) -> str:
    return f"{Provider(provider).value}/{type_}/{name}"


@dataclass(frozen=True, slots=True)
class ManagedObject:
    """One object a provider must hold, with what it depends on and which org resource owns it.

    `owner` is the org resource reference (`Worker/alice`, `Team/frontend-team`, ... or `org` for shared
    objects). `depends_on` lists keys that must exist before this one is applied (and be deleted after it).
    """

    provider: Provider
    type: str
    name: str
    spec: Mapping[str, Any]
    owner: str
    depends_on: tuple[str, ...] = ()
    prune: bool = True
    hash: str = field(default="", compare=False, repr=False)
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once: plans compare hashes of tens of thousands of objects.
        object.__setattr__(self, "key", make_key(self.provider, self.type, self.name))
        if not self.hash:
            object.__setattr__(self, "hash", spec_hash(self.spec))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "provider": self.provider.value,
            "type": self.type,
            "name": self.name,
            "spec": self.spec,
            "owner": self.owner,
            "depends_on": list(self.depends_on),
            "prune": self.prune,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManagedObject:
        return cls(
            provider=Provider(data["provider"]),
            type=data["type"],
            name=data["name"],
            spec=data["spec"],
            owner=data["owner"],
            depends_on=tuple(data.get("depends_on", ())),
            prune=bool(data.get("prune", True)),
        )


@dataclass(frozen=True, slots=True)
class DesiredState:
    """The compiler's output: objects by key, plus the access report and what was left out and why."""

    objects: Mapping[str, ManagedObject]
    providers: frozenset[Provider]
    access: Any = None  # gitops.access.AccessReport
    notes: tuple[str, ...] = field(default=())

    def by_provider(self, provider: Provider) -> list[ManagedObject]:
        return [o for o in self.objects.values() if o.provider is provider]

    @classmethod
    def of(cls, objects: Iterable[ManagedObject], providers: Iterable[Provider], **kw: Any) -> DesiredState:
        table: dict[str, ManagedObject] = {}
        for obj in objects:
            if obj.key in table:
                raise ValueError(f"compiler produced {obj.key} twice")
            table[obj.key] = obj
        return cls(dict(sorted(table.items())), frozenset(providers), **kw)
