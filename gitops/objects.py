"""Managed objects: the concrete things the org chart implies, keyed `provider/type/name`.

Desired state is a set of these (built by `gitops.compile`); baselines produce the same shape for what
exists. Specs are plain JSON data. Secret values never appear in a spec: a credential is written as a
`secret_ref(...)` marker string that only the applier resolves against the secret store.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from json.encoder import encode_basestring as _escape  # the C escaper json.dumps uses
from typing import Any

SECRET_PREFIX = "secret://"
# A key naming one of these holds a secret: plans mask its string values unless they are `secret://` references.
SECRET_KEY_WORDS = ("password", "secret", "token", "apikey", "api_key", "credential", "private")
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


class _NotPlain(Exception):
    """A value `pretty_json` leaves to the standard library (non-string keys, float specials, subclasses)."""


def pretty_json(value: Any) -> str:
    """`json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)`, byte for byte, several times faster.

    With `indent` the standard library drops to its pure-Python encoder, one generator step per token. Here
    strings are escaped by the C escaper and a list of strings is one `join`; only mappings and other lists
    are walked in Python. Anything but exact JSON types goes to `json.dumps`, so the bytes never differ.
    """
    try:
        return _pretty(value, "\n")
    except _NotPlain:
        return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)


def _pretty(value: Any, newline: str) -> str:
    kind = type(value)
    if kind is str:
        return _escape(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = newline + "  "
        items = []
        for key in sorted(value):
            if type(key) is not str:
                raise _NotPlain
            items.append(_escape(key) + ": " + _pretty(value[key], inner))
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = newline + "  "
        try:
            body = ("," + inner).join(map(_escape, value))  # the common case: a list of strings, all in C
        except TypeError:
            body = ("," + inner).join([_pretty(v, inner) for v in value])
        return "[" + inner + body + newline + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    raise _NotPlain


def file_text(spec: Mapping[str, Any]) -> str:
    """The text of a storage object (`storage/object/*` spec): its `content` as it is, or, for a JSON
    document held as data, that document rendered — indented, keys sorted, newline-terminated. Rendered
    only when a file is written or shown, never at compile time."""
    content = spec.get("content", "")
    return content if isinstance(content, str) else pretty_json(content) + "\n"


def spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]


def spec_digest(spec: Mapping[str, Any]) -> tuple[str, bool]:
    """`spec_hash(spec)` and whether the spec is plain — holds nothing a plan would mask — from one dump."""
    text = canonical_json(spec)
    return hashlib.sha256(text.encode()).hexdigest()[:16], _plain(text)


def secret_key(key: str) -> bool:
    """Whether a spec key names a secret (its string values are masked in plans, references excepted)."""
    folded = key.casefold()
    return any(word in folded for word in SECRET_KEY_WORDS)


_HARMLESS_VALUE = ('"secret://', '"",', '""}', "null", "true", "false", "-", "0", "1", "2", "3", "4", "5", "6", "7",
                   "8", "9")


def _plain(text: str) -> bool:
    """Whether a canonical JSON text holds no secret-named key with a value a plan would mask. Conservative:
    anything unclear (an escaped quote near a secret word, a container under a secret key) is "not plain".
    Secret words are found by `str.find`, so a spec without one costs a few scans at C speed."""
    folded = text.casefold()
    if len(folded) != len(text):  # casefolding expanded a character: positions no longer line up
        return False
    for word in SECRET_KEY_WORDS:
        at = folded.find(word)
        while at != -1:
            end = text.find('"', at)  # the end of the string holding the word
            if end == -1 or text[end - 1] == "\\":
                return False
            if text.startswith(":", end + 1) and not text.startswith(_HARMLESS_VALUE, end + 2):
                return False  # a secret-named key whose value may need masking
            at = folded.find(word, at + 1)
    return True


def object_hash(spec: Mapping[str, Any], consumed: str = "") -> str:
    """A managed object's hash: its spec's, combined with the digest of the secret values it consumes (if any).
    Backends that record the hash on what they write recompute it with this."""
    digest = spec_hash(spec)
    return hashlib.sha256(f"{digest}:{consumed}".encode()).hexdigest()[:16] if consumed else digest


def make_key(provider: Provider | str, type_: str, name: str) -> str:
    return f"{Provider(provider).value}/{type_}/{name}"


@dataclass(frozen=True, slots=True)
class ManagedObject:
    """One object a provider must hold, with what it depends on and which org resource owns it.

    `owner` is the org resource reference (`Worker/alice`, `Team/frontend-team`, ... or `org` for shared
    objects). `depends_on` lists keys that must exist before this one is applied (and be deleted after it).

    Outputs: `produces` names the secrets applying this object yields (an account's access token); an object
    whose spec refers to one (`secret://…`) consumes it and is applied after its producer. `consumed` is a
    digest of the values of the secrets it consumes (set by the pipeline, never a value): it is part of the
    hash, so a re-issued credential changes the hash of everything that carries it. `shares` names the remote
    record this object is one entry of (a route all grants are written to); changes to one record never run
    at the same time.
    """

    provider: Provider
    type: str
    name: str
    spec: Mapping[str, Any]
    owner: str
    depends_on: tuple[str, ...] = ()
    prune: bool = True
    produces: tuple[str, ...] = ()
    shares: str = ""
    consumed: str = field(default="", compare=False)
    # The spec's hash, computed once (or passed in when the caller already has it). Change a spec with
    # `with_spec`, never `dataclasses.replace`, which would carry the old hash over.
    hash: str = field(default="", compare=False, repr=False)
    # True when the spec holds nothing a plan would mask (`plain_spec`), known when the hash is computed here
    # or passed in with it; False means "not known": the plan walks the spec.
    plain: bool = field(default=False, compare=False, repr=False)
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once: plans compare hashes of tens of thousands of objects.
        object.__setattr__(self, "key", make_key(self.provider, self.type, self.name))
        if not self.hash:
            digest, plain = spec_digest(self.spec)
            object.__setattr__(self, "hash", object_hash(self.spec, self.consumed) if self.consumed else digest)
            object.__setattr__(self, "plain", plain)

    def __reduce__(self) -> tuple[Any, ...]:
        # Unpickling through the dataclass's own state methods costs ten times more, field by field in Python:
        # the compile cache holds tens of thousands of these.
        return _restore, tuple(getattr(self, name) for name in _FIELDS)

    def with_spec(self, spec: Mapping[str, Any]) -> ManagedObject:
        """The same object with another spec (and that spec's hash)."""
        return ManagedObject(self.provider, self.type, self.name, spec, self.owner, self.depends_on, self.prune,
                             self.produces, self.shares, self.consumed)  # hash and plain computed anew

    def with_consumed(self, digest: str) -> ManagedObject:
        """The same object carrying another digest of the secret values it consumes (and that hash)."""
        if digest == self.consumed:
            return self
        return ManagedObject(self.provider, self.type, self.name, self.spec, self.owner, self.depends_on,
                             self.prune, self.produces, self.shares, digest)

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
            **({"produces": list(self.produces)} if self.produces else {}),
            **({"shares": self.shares} if self.shares else {}),
            **({"consumed": self.consumed} if self.consumed else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], hash: str = "") -> ManagedObject:
        """From `to_dict()`; `hash` when the caller kept the spec's hash (it is computed otherwise)."""
        return cls(
            provider=Provider(data["provider"]),
            type=data["type"],
            name=data["name"],
            spec=data["spec"],
            owner=data["owner"],
            depends_on=tuple(data.get("depends_on", ())),
            prune=bool(data.get("prune", True)),
            produces=tuple(data.get("produces", ())),
            shares=str(data.get("shares", "")),
            consumed=str(data.get("consumed", "")),
            hash=hash,
        )


_FIELDS = ("provider", "type", "name", "spec", "owner", "depends_on", "prune", "produces", "shares", "consumed",
           "hash", "plain", "key")


def _restore(*values: Any) -> ManagedObject:
    obj = object.__new__(ManagedObject)
    for name, value in zip(_FIELDS, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


_COMPARED = tuple(f.name for f in fields(ManagedObject) if f.compare)
_DECODING = threading.Lock()


class RecordedObject(ManagedObject):
    """A managed object as the inventory recorded it, its spec kept as the recorded JSON text until something
    reads it. A plan compares unchanged objects by key and hash alone, so most recorded specs are never
    decoded; one that is (a change shows it, a guard or backend reads it) is decoded once, whichever thread
    asks first, and is the value `json.loads` gives. Everything else is as `ManagedObject.from_dict` makes it.
    """

    __slots__ = ("_decoded", "_text")
    _decoded: Mapping[str, Any] | None  # the spec, once read
    _text: str  # the spec's recorded JSON, until read

    def __init__(self, data: Mapping[str, Any], spec_text: str, hash: str) -> None:
        """From `to_dict()` without its spec, the spec's JSON text, and the hash recorded with it."""
        # Not the dataclass's __init__: that would assign `spec`, which here is read only.
        set_ = object.__setattr__
        set_(self, "provider", Provider(data["provider"]))
        set_(self, "type", data["type"])
        set_(self, "name", data["name"])
        set_(self, "owner", data["owner"])
        set_(self, "depends_on", tuple(data.get("depends_on", ())))
        set_(self, "prune", bool(data.get("prune", True)))
        set_(self, "produces", tuple(data.get("produces", ())))
        set_(self, "shares", str(data.get("shares", "")))
        set_(self, "consumed", str(data.get("consumed", "")))
        set_(self, "hash", hash)
        set_(self, "plain", False)  # not known: a plan walks the spec to mask it
        set_(self, "key", make_key(self.provider, self.type, self.name))
        set_(self, "_text", spec_text)
        set_(self, "_decoded", None)

    @property
    def spec(self) -> Mapping[str, Any]:
        decoded = self._decoded
        if decoded is None:
            with _DECODING:  # the executor's workers may read one object at the same time: decode it once
                decoded = self._decoded
                if decoded is None:
                    decoded = json.loads(self._text)
                    object.__setattr__(self, "_decoded", decoded)
                    object.__setattr__(self, "_text", "")
        return decoded

    @property
    def decoded(self) -> bool:
        """Whether the spec has been read (and decoded) yet."""
        return self._decoded is not None

    def __eq__(self, other: object) -> bool:
        # The dataclass's __eq__ compares objects of one class only; a recorded object equals the
        # ManagedObject it was recorded from.
        if not isinstance(other, ManagedObject):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED)


@dataclass(frozen=True, slots=True)
class DesiredState:
    """The compiler's output: objects by key, plus the access report and what was left out and why."""

    objects: Mapping[str, ManagedObject]
    providers: frozenset[Provider]
    access: Any = None  # gitops.compile.access.AccessReport
    notes: tuple[str, ...] = field(default=())  # what the settings leave out (meaningless in an offline plan)
    warnings: tuple[str, ...] = field(default=())  # about the org itself (an agent whose model no route serves)

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
