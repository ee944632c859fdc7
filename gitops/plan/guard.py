"""Prune guard (SPEC §5.4): refuse mass deletions and an implicit empty org before anything is applied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gitops.objects import DesiredState, ManagedObject
from gitops.plan.baseline import Baseline
from gitops.settings.model import PruneSettings


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
    current: Baseline,
    prune: PruneSettings,
    new_org: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Refuse mass deletions and an implicit empty org (SPEC §5.4). Deleting one agent is never 'mass'.

    Agents are counted by identity (an agent put to `Stopped` keeps its identity and is not a deletion).
    With `prune.enabled: false` nothing is deleted, so nothing can trip it.
    """
    if not prune.enabled:
        return {"tripped": False, "reasons": [], "deleted_agents": []}
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
