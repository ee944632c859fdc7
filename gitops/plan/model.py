"""Plan: the difference between desired state and a baseline, as one immutable, versioned value.

`make_plan` does no I/O. Views render `Plan.to_dict()`; the applier executes `Plan.changes` and never
re-decides what changes. Secret values never enter a plan: specs carry only `secret://` references,
and `redact` masks anything secret-shaped that an observation might have brought in.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gitops.compile.access import AccessDiff
from gitops.objects import SECRET_PREFIX, ManagedObject, Provider, canonical_json, secret_key

FORMAT_VERSION = 2  # 2: the access section holds set changes and per-principal summaries, not pairs
REDACTED = "(redacted)"
UP_TO_DATE = "up to date"

CREDENTIALS_CHANGED = "a credential it carries was issued again (values never shown)"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "noop"


SYMBOLS = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "±", Action.DELETE: "-", Action.NOOP: " "}


@dataclass(frozen=True, slots=True)
class DiffItem:
    op: str  # "add" | "remove" | "change"
    path: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class Change:
    key: str
    action: Action
    owner: str
    reason: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    diff: tuple[DiffItem, ...] = ()
    depends_on: tuple[str, ...] = ()

    @property
    def provider(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def type(self) -> str:
        return self.key.split("/", 2)[1]

    @property
    def name(self) -> str:
        return self.key.split("/", 2)[2]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "provider": self.provider,
            "type": self.type,
            "name": self.name,
            "action": self.action.value,
            "owner": self.owner,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "diff": [d.to_dict() for d in self.diff],
            "depends_on": list(self.depends_on),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        return cls(
            key=d["key"],
            action=Action(d["action"]),
            owner=d["owner"],
            reason=d["reason"],
            before=d.get("before"),
            after=d.get("after"),
            diff=tuple(DiffItem(i["op"], i["path"], i.get("old"), i.get("new")) for i in d.get("diff", ())),
            depends_on=tuple(d.get("depends_on", ())),
        )


@dataclass(frozen=True, slots=True)
class ResourceSummary:
    """Org-level view of one resource: `alice: created`, `frontend-team: +worker bob; peerMentions true → false`."""

    ref: str
    status: str  # created | updated | deleted | affected
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "status": self.status, "details": list(self.details)}


@dataclass(frozen=True, slots=True)
class Plan:
    head: str
    base: str
    compared_against: str  # live | state | commit | directory | empty
    fingerprint: str
    providers: Mapping[str, str]  # provider -> "enabled" | "disabled: why"
    changes: tuple[Change, ...]
    summaries: tuple[ResourceSummary, ...] = ()
    access: AccessDiff = field(default_factory=AccessDiff)
    warnings: tuple[str, ...] = ()
    guard: Mapping[str, Any] = field(default_factory=dict)
    unchanged: int = 0  # objects already as desired (their no-op changes are not serialised)
    format_version: int = FORMAT_VERSION

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    def counts(self) -> dict[str, int]:
        return {a.value: self.count(a) for a in Action if a is not Action.NOOP}

    @property
    def unchanged_total(self) -> int:
        """Objects already as desired: the count carried over from a saved plan plus the no-op changes held."""
        return self.unchanged + self.count(Action.NOOP)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "head": self.head,
            "base": self.base,
            "compared_against": self.compared_against,
            "fingerprint": self.fingerprint,
            "providers": dict(self.providers),
            "counts": self.counts(),
            "summaries": [s.to_dict() for s in self.summaries],
            "access": self.access.to_dict(),
            "warnings": list(self.warnings),
            "guard": dict(self.guard),
            "changes": [c.to_dict() for c in self.changes if c.action is not Action.NOOP],
            "unchanged": self.unchanged_total,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"plan format {d.get('format_version')!r} is not {FORMAT_VERSION}")
        return cls(
            head=d["head"],
            base=d["base"],
            compared_against=d["compared_against"],
            fingerprint=d["fingerprint"],
            providers=d["providers"],
            changes=tuple(Change.from_dict(c) for c in d["changes"]),
            summaries=tuple(ResourceSummary(s["ref"], s["status"], tuple(s["details"])) for s in d["summaries"]),
            access=AccessDiff.from_dict(d["access"]),
            warnings=tuple(d["warnings"]),
            guard=d.get("guard", {}),
            unchanged=int(d.get("unchanged", 0)),
        )


# Diffing ----------------------------------------------------------------------------------------------


def redact(value: Any, key: str = "") -> Any:
    """Mask secret-shaped values (never `secret://` references, which name a secret without revealing it).

    What holds nothing to mask is returned as it is, not copied: specs are immutable values, and a plan of
    90,000 created objects would otherwise copy every one of them."""
    if isinstance(value, str):
        return REDACTED if value and key and _secret_key(key) and not value.startswith(SECRET_PREFIX) else value
    if isinstance(value, Mapping):
        out: dict[Any, Any] | None = None if type(value) is dict else dict(value)
        for k, v in value.items():
            if isinstance(v, (str, Mapping, list, tuple)):
                masked = redact(v, str(k))
                if masked is not v:
                    if out is None:
                        out = dict(value)
                    out[k] = masked
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        if (not key or not _secret_key(key)) and all(type(v) is str for v in value):
            return value if type(value) is list else list(value)  # the common case: a list of IDs
        items = [redact(v, key) for v in value]
        if type(value) is list and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
    return value


def shown(obj: ManagedObject) -> Any:
    """An object's spec as a plan shows it: redacted, unless the object is known to hold nothing to mask."""
    return obj.spec if obj.plain else redact(obj.spec)


_secret_key = functools.lru_cache(maxsize=4096)(secret_key)


def diff_specs(old: Any, new: Any, path: str = "") -> list[DiffItem]:
    """Structural difference: mappings by key, lists of scalars as sets (add/remove), anything else as change."""
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[DiffItem] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(DiffItem("add", sub, None, new[k]))
            elif k not in new:
                out.append(DiffItem("remove", sub, old[k], None))
            else:
                out.extend(diff_specs(old[k], new[k], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and _scalars(old) and _scalars(new):
        removed, added = _missing(old, new), _missing(new, old)
        if removed or added:
            return [DiffItem("remove", path, v, None) for v in removed] + [
                DiffItem("add", path, None, v) for v in added
            ]
        return [DiffItem("change", path, old, new)]  # same members, other order
    return [DiffItem("change", path, old, new)]


def _missing(items: list[Any], other: list[Any]) -> list[Any]:
    """The items not in `other`, in order: `[v for v in items if v not in other]` in linear time."""
    try:
        present = set(other)
    except TypeError:  # an unhashable scalar-like value
        return [v for v in items if v not in other]
    return [v for v in items if v not in present]


def _scalars(items: Sequence[Any]) -> bool:
    return all(not isinstance(v, (Mapping, list)) for v in items)


def _top(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def change_for(
    desired: ManagedObject | None,
    current: ManagedObject | None,
    replace_on: frozenset[str] = frozenset(),
    prune: bool = True,
) -> Change:
    """The change that turns `current` (baseline) into `desired`. `replace_on`: the fields of this object's
    type that force a replace (its backend's traits); `prune`: whether deleting is allowed at all."""
    if desired is None and current is None:
        raise ValueError("nothing to compare")
    if current is None:
        assert desired is not None
        return Change(
            desired.key,
            Action.CREATE,
            desired.owner,
            "declared, not present",
            None,
            shown(desired),
            (),
            desired.depends_on,
        )
    if desired is None:
        if not current.prune or not prune:
            why = "by the gitops.hiclaw.io/prune annotation" if not current.prune else "by prune.enabled: false"
            return Change(
                current.key,
                Action.NOOP,
                current.owner,
                f"no longer declared; kept (prune disabled {why})",
                shown(current),
                shown(current),
                (),
                current.depends_on,
            )
        return Change(
            current.key,
            Action.DELETE,
            current.owner,
            "no longer declared",
            shown(current),
            None,
            (),
            current.depends_on,
        )
    if desired.hash == current.hash:
        return Change(desired.key, Action.NOOP, desired.owner, UP_TO_DATE, None, None, (), desired.depends_on)
    items = tuple(diff_specs(shown(current), shown(desired)))
    changed = sorted({_top(i.path) for i in items})
    if not items and desired.consumed != current.consumed:
        return Change(desired.key, Action.UPDATE, desired.owner, CREDENTIALS_CHANGED, shown(current),
                      shown(desired), (), desired.depends_on)
    replace = [p for p in changed if p in replace_on]
    if replace:
        return Change(
            desired.key,
            Action.REPLACE,
            desired.owner,
            f"{', '.join(replace)} changed: must be re-created",
            shown(current),
            shown(desired),
            items,
            desired.depends_on,
        )
    return Change(
        desired.key,
        Action.UPDATE,
        desired.owner,
        f"{', '.join(changed) or 'spec'} changed",
        shown(current),
        shown(desired),
        items,
        desired.depends_on,
    )


def fingerprint(objects: Mapping[str, ManagedObject]) -> str:
    h = hashlib.sha256()
    for key in sorted(objects):
        h.update(f"{key}={objects[key].hash}\n".encode())
    return h.hexdigest()[:16]


def diff_objects(
    desired: Mapping[str, ManagedObject],
    current: Mapping[str, ManagedObject],
    replace_on: Callable[[ManagedObject], frozenset[str]] = lambda obj: frozenset(),
    prune: bool = True,
    reissue: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Change, ...]:
    """Changes for every key of either side. `reissue`: producers whose outputs are missing (key -> secret
    names) are applied again even when nothing else changed."""
    # Both sides are usually sorted by key already, so the sort below only merges two runs; most objects are
    # unchanged, so their no-op is built here rather than through change_for.
    keys = sorted([*desired, *(k for k in current if k not in desired)])
    reissue = reissue or {}
    out: list[Change] = []
    for k in keys:
        d, c = desired.get(k), current.get(k)
        if d is not None and c is not None and d.hash == c.hash:
            if k in reissue:
                why = f"output {', '.join(reissue[k])} is missing: apply again to issue it"
                out.append(Change(d.key, Action.UPDATE, d.owner, why, None, None, (), d.depends_on))
            else:
                out.append(Change(d.key, Action.NOOP, d.owner, UP_TO_DATE, None, None, (), d.depends_on))
        else:
            out.append(change_for(d, c, replace_on(d) if d is not None else frozenset(), prune))
    return tuple(out)


# Org-level summaries ----------------------------------------------------------------------------------

# Lists of named entries, summarised as `+worker bob` / `-worker bob` / `worker bob: model a → b`.
_NAMED_LISTS = {"workers": "worker", "humanMembers": "human member", "mcpServers": "mcp server", "expose": "port"}


def summarise(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]], changes: Iterable[Change]
) -> tuple[ResourceSummary, ...]:
    """Per org resource (`Kind/name` → spec): created, deleted, updated with details, or affected by others."""
    out: list[ResourceSummary] = []
    changes = list(changes)
    touched = {c.owner for c in changes if c.action is not Action.NOOP}
    agents = _agent_effects(changes)
    for ref in sorted(set(old) | set(new)):
        effects = agents.get(ref, ())
        if ref not in old:
            out.append(ResourceSummary(ref, "created"))
        elif ref not in new:
            out.append(ResourceSummary(ref, "deleted"))
        elif old[ref] != new[ref]:
            out.append(ResourceSummary(ref, "updated", (*describe_spec_change(old[ref], new[ref]), *effects)))
        elif ref in touched:
            out.append(ResourceSummary(ref, "affected", effects or ("objects change because of other resources",)))
    return tuple(out)


RESTART_NAMES = 5  # agents named per effect line


def _agent_effects(changes: Iterable[Change]) -> dict[str, tuple[str, ...]]:
    """Per owner, in words, what its agents go through: `restarts 3 agents: a, b, c` (their configuration or a
    credential they carry changed), `re-creates 1 agent: d` (what its container is made of changed)."""
    restarts: dict[str, list[str]] = {}
    recreates: dict[str, list[str]] = {}
    for c in changes:
        if not c.key.startswith("runtime/container/"):
            continue
        name = c.key.split("/", 2)[2].removeprefix("hiclaw-worker-")
        if c.action is Action.UPDATE:
            restarts.setdefault(c.owner, []).append(name)
        elif c.action is Action.REPLACE:
            recreates.setdefault(c.owner, []).append(name)
    out: dict[str, tuple[str, ...]] = {}
    for owner in sorted(restarts.keys() | recreates.keys()):
        lines = []
        for verb, found in (("restarts", restarts.get(owner)), ("re-creates", recreates.get(owner))):
            if found:
                names = sorted(found)
                more = len(names) - RESTART_NAMES
                listed = ", ".join(names[:RESTART_NAMES]) + (f" and {more} more" if more > 0 else "")
                lines.append(f"{verb} {len(names)} agent{'' if len(names) == 1 else 's'}: {listed}")
        out[owner] = tuple(lines)
    return out


def describe_spec_change(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        label = f"{prefix}{k}"
        # A mapping or list that appears or disappears is described by its contents.
        if a is None and isinstance(b, (Mapping, list)):
            a = {} if isinstance(b, Mapping) else []
        elif b is None and isinstance(a, (Mapping, list)):
            b = {} if isinstance(a, Mapping) else []
        if k in _NAMED_LISTS and _named(a) and _named(b):
            out.extend(_describe_named(_NAMED_LISTS[k], a or [], b or [], prefix))
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(describe_spec_change(a, b, f"{label}."))
        elif isinstance(a, list) and isinstance(b, list) and _scalars(a) and _scalars(b):
            out.extend([f"+{label} {v}" for v in b if v not in a] + [f"-{label} {v}" for v in a if v not in b])
        elif isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b):
            out.append(f"{label} changed ({len(a.splitlines())} → {len(b.splitlines())} lines)")
        elif a is None:
            out.append(f"{label} set to {_short(b)}")
        elif b is None:
            out.append(f"{label} removed (was {_short(a)})")
        else:
            out.append(f"{label} {_short(a)} → {_short(b)}")
    return out


def _named(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, Mapping) for v in value))


def _entry_name(entry: Mapping[str, Any]) -> str:
    return str(entry.get("name", entry.get("port", "?")))


def _describe_named(what: str, old: list[Mapping[str, Any]], new: list[Mapping[str, Any]], prefix: str) -> list[str]:
    a = {_entry_name(e): e for e in old}
    b = {_entry_name(e): e for e in new}
    out = [f"+{what} {n}" for n in b if n not in a] + [f"-{what} {n}" for n in a if n not in b]
    for n in b:
        if n in a and a[n] != b[n]:
            out.extend(describe_spec_change(a[n], b[n], f"{what} {n}: "))
    return out


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if "\n" in value or len(value) > 60:
            return f"({len(value.splitlines())} lines)" if "\n" in value else value[:57] + "..."
        return value
    text = canonical_json(value)
    return text if len(text) <= 60 else text[:57] + "..."


def raised_to_level_one(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A Human raised to permission level 1 joins every shared room and every agent's allow-lists."""
    out = []
    for ref, spec in new.items():
        if ref.startswith("Human/") and spec.get("permissionLevel") == 1 and ref in old and (
                old[ref].get("permissionLevel") != 1):
            out.append(f"access: {ref} is raised to level 1: a member of every shared room and on every agent's "
                       "allow-lists, the Manager's included")
    return out


def make_plan(
    *,
    desired: Mapping[str, ManagedObject],
    current: Mapping[str, ManagedObject],
    head: str,
    base: str,
    compared_against: str,
    providers: Iterable[Provider],
    disabled_notes: Mapping[str, str],
    old_org: Mapping[str, Mapping[str, Any]],
    new_org: Mapping[str, Mapping[str, Any]],
    access: AccessDiff | None = None,
    warnings: Iterable[str] = (),
    guard: Mapping[str, Any] | None = None,
    replace_on: Callable[[ManagedObject], frozenset[str]] = lambda obj: frozenset(),
    prune: bool = True,
    reissue: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """Compare desired with current and assemble the plan. Pure. `replace_on` gives the fields that force a
    replace per object (the backends' traits); `prune` false keeps everything no longer declared."""
    enabled = {p.value for p in providers}
    changes = diff_objects(desired, current, replace_on, prune, reissue)
    kept = sum(1 for key, obj in current.items() if key not in desired and (not obj.prune or not prune))
    warnings = list(warnings)
    if kept:
        why = "prune disabled" if prune else "prune.enabled is false in the settings"
        warnings.append(f"{kept} object(s) no longer declared are kept: {why}")
    warnings += raised_to_level_one(old_org, new_org)
    if access is not None:
        warnings += access.warnings
    provider_state = {
        p.value: "enabled" if p.value in enabled else f"disabled: {disabled_notes.get(p.value, 'not configured')}"
        for p in Provider
    }
    return Plan(
        head=head,
        base=base,
        compared_against=compared_against,
        fingerprint=fingerprint(current),
        providers=provider_state,
        changes=changes,
        summaries=summarise(old_org, new_org, changes),
        access=access or AccessDiff(),
        warnings=tuple(warnings),
        guard=dict(guard or {}),
    )
