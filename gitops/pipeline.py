"""The pipeline in one place: source → load → validate → compile → baseline → plan (→ apply → verify).

Each stage is a function of values; this module only sequences them. Commands and the daemon call it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops.apply.state import org_snapshot
from gitops.compile import CompileCache, access, compile_org
from gitops.gcpause import paused_gc
from gitops.objects import DesiredState, ManagedObject, Provider
from gitops.plan import baseline as baselines
from gitops.plan.model import Plan, make_plan
from gitops.settings.model import PruneSettings, Settings
from gitops.source.files import FileSource
from gitops.source.load import LoadResult, ParseCache, load
from gitops.validate.check import Validation, validate


@dataclass(frozen=True, slots=True)
class OrgRead:
    """A validated org chart and where it came from."""

    head: str
    loaded: LoadResult
    validation: Validation

    @property
    def ok(self) -> bool:
        return self.validation.ok


def read_org(source: FileSource, cache: ParseCache | None = None, strict: bool = False, head: str = "") -> OrgRead:
    with paused_gc():
        loaded = load(source, cache)
        validation = validate(loaded, strict=strict, escapes=source.escapes, cache=cache)
        return OrgRead(head or digest(loaded), loaded, validation)


def digest(loaded: LoadResult) -> str:
    """A content digest of a directory's org files: `dir:<16 hex>`, stable across machines."""
    h = hashlib.sha256()
    for path in sorted(loaded.files):
        h.update(f"{path}\0{loaded.files[path].blob_id}\n".encode())
    return "dir:" + h.hexdigest()[:16]


def desired_state(read: OrgRead, settings: Settings, cache: CompileCache | None = None) -> DesiredState:
    """The compiled org; with a cache, units whose inputs did not change are reused (same result either way)."""
    return compile_org(read.validation.org, settings, cache)


def baseline_of(
    read: OrgRead, settings: Settings, kind: str, cache: CompileCache | None = None
) -> baselines.Baseline:
    """Another commit's or directory's desired state, as an offline baseline."""
    desired = desired_state(read, settings, cache)
    return baselines.Baseline(
        kind, read.head, desired.objects, org_snapshot(read.validation.org.resources()), desired.access
    )


def org_agents(org: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Agent identities of an org snapshot: `Worker/x`, `Manager/x`, `Team/t/member`."""
    found: set[str] = set()
    for ref, spec in org.items():
        kind = ref.split("/", 1)[0]
        if kind in ("Worker", "Manager"):
            found.add(ref)
        elif kind == "Team":
            members = [spec.get("leader") or {}, *(spec.get("workers") or [])]
            found.update(f"{ref}/{m['name']}" for m in members if isinstance(m, Mapping) and m.get("name"))
    return found


def _object_agents(objects: Iterable[ManagedObject]) -> set[str]:
    """Agent identities seen in objects alone (a baseline with no org snapshot): their Matrix accounts, else
    their containers. Counted from one kind only, so an agent is never counted twice."""
    users = {o.name for o in objects if o.key.startswith("matrix/user/") and o.spec.get("kind") == "agent"}
    return users or {o.name for o in objects if o.key.startswith("runtime/container/")}


def prune_guard(
    desired: DesiredState,
    current: baselines.Baseline,
    prune: PruneSettings,
    new_org: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Refuse mass deletions and an implicit empty org (SPEC §5.4). Deleting one agent is never 'mass'.

    Agents are counted by identity (an agent put to `Stopped` keeps its identity and is not a deletion).
    """
    if current.org and new_org is not None:
        before, after = org_agents(current.org), org_agents(new_org)
    else:
        before, after = _object_agents(current.objects.values()), _object_agents(desired.objects.values())
    deleted = sorted(before - after)
    total = len(before)
    reasons = []
    if current.objects and not desired.objects:
        reasons.append("the desired state is empty; an empty org is never applied implicitly")
    if len(deleted) > prune.max_agents:
        reasons.append(f"{len(deleted)} agents would be deleted (limit {prune.max_agents})")
    elif total and len(deleted) >= 2 and len(deleted) / total > prune.max_fraction:
        reasons.append(f"{len(deleted)} of {total} agents would be deleted (more than {prune.max_fraction:.0%})")
    return {"tripped": bool(reasons), "reasons": reasons, "deleted_agents": deleted}


def plan(
    read: OrgRead,
    settings: Settings,
    current: baselines.Baseline,
    desired: DesiredState | None = None,
    all_providers: bool = False,
    cache: CompileCache | None = None,
) -> Plan:
    """Plan the head org against a baseline. With all_providers, disabled providers are planned too (offline)."""
    effective = settings.with_all_providers() if all_providers else settings
    with paused_gc():
        desired = desired or desired_state(read, effective, cache)
        return _plan(read, settings, effective, current, desired, all_providers)


def _plan(
    read: OrgRead,
    settings: Settings,
    effective: Settings,
    current: baselines.Baseline,
    desired: DesiredState,
    all_providers: bool,
) -> Plan:
    gained, lost = access.diff(current.access, desired.access) if desired.access is not None else ((), ())
    new_org = org_snapshot(read.validation.org.resources())
    guard = prune_guard(desired, current, settings.prune, new_org)
    warnings = list(desired.notes) if not all_providers else []
    if guard["tripped"]:
        warnings.append("prune guard: " + "; ".join(guard["reasons"]) + " — apply refuses without --allow-mass-delete")
    return make_plan(
        desired=desired.objects,
        current=current.objects,
        head=read.head,
        base=current.label,
        compared_against=current.kind,
        providers=effective.providers,
        disabled_notes={p.value: "no settings section" for p in Provider},
        old_org=current.org,
        new_org=new_org,
        access_gained=gained,
        access_lost=lost,
        warnings=warnings,
        guard=guard,
    )
