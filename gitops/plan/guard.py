"""Guards (SPEC §5.4, §5.6): refuse mass deletions, an implicit empty org, and many running agents stopped by
enforce-state, before anything is applied.

The prune guard counts agents whose identity goes. The state guard counts agents declared with
`gitops.hiclaw.io/enforce-state: "true"` that are running and that the plan would stop or put to sleep — an
agent a person woke and a drift heal puts back, or a commit stopping many of them at once. Both use the same
limits (`prune.max_agents`, `prune.max_fraction`): taking an agent out of service is the same harm whether its
identity goes or not, and one pair of numbers is one thing to tune. Either verdict trips the plan's guard, and
the same override lets it through (`--allow-mass-delete`, or an approval in chat).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gitops.objects import DesiredState, ManagedObject
from gitops.plan.baseline import Baseline
from gitops.providers.protocol import ENFORCE_FIELD
from gitops.settings.model import PruneSettings

RUNNING = "Running"
STOPPING = frozenset({"Sleeping", "Stopped"})
CONTAINER = "runtime/container/"


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
        return {"tripped": False, "reasons": [], "deleted_agents": []}  # the state guard may still trip
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


def stops(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    """Whether a container change stops or puts to sleep a running agent whose state is enforced."""
    return bool(
        before and after and after.get(ENFORCE_FIELD) is True
        and before.get("state") == RUNNING and after.get("state") in STOPPING
    )


def agent_of(spec: Mapping[str, Any], fallback: str) -> str:
    """An agent's identity from its container's labels, as the prune guard names it: `Worker/x`, `Manager/x`,
    `Team/t/x`."""
    labels = spec.get("labels") if isinstance(spec.get("labels"), Mapping) else {}
    assert isinstance(labels, Mapping)
    kind, name, team = labels.get("hiclaw.io/kind"), labels.get("hiclaw.io/name"), labels.get("hiclaw.io/team")
    if not kind or not name:
        return fallback
    return f"Team/{team}/{name}" if team else f"{kind}/{name}"


def stopped_agents(pairs: Iterable[tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]]) -> list[str]:
    """The agents stopped or put to sleep by enforce-state among (key, before, after) container specs."""
    return sorted({agent_of(after or {}, key.removeprefix(CONTAINER)) for key, before, after in pairs
                   if key.startswith(CONTAINER) and stops(before, after)})


def state_guard(
    desired: DesiredState, current: Baseline, prune: PruneSettings
) -> dict[str, Any]:
    """Refuse a plan that would stop or put to sleep more running enforce-state agents than the prune limits
    allow: more than `max_agents`, or (two or more) more than `max_fraction` of all the agents with a
    container. An agent without enforce-state is never counted: its sleep and wake are its own."""
    # A container whose hash is unchanged stops nothing, and its recorded spec need not be read.
    pairs = [(key, obj.spec, new.spec) for key, obj in current.objects.items()
             if key.startswith(CONTAINER) and (new := desired.objects.get(key)) is not None and new.hash != obj.hash]
    stopped = stopped_agents(pairs)
    total = sum(1 for key in current.objects if key.startswith(CONTAINER))  # agents, as the prune guard counts
    reasons = []
    if len(stopped) > prune.max_agents:
        reasons.append(f"{len(stopped)} running agents with enforce-state would be stopped or put to sleep "
                       f"(limit {prune.max_agents})")
    elif total and len(stopped) >= 2 and len(stopped) / total > prune.max_fraction:
        reasons.append(f"{len(stopped)} of {total} agents would be stopped or put to sleep by enforce-state "
                       f"(more than {prune.max_fraction:.0%})")
    return {"tripped": bool(reasons), "reasons": reasons, "stopped_agents": stopped}


def guards(
    desired: DesiredState,
    current: Baseline,
    prune: PruneSettings,
    new_org: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The plan's guard (the prune and state guards' verdicts in one: `tripped` when either trips, `tripped_by`
    naming which) and the plan warnings naming which guard tripped and why."""
    pruned = prune_guard(desired, current, prune, new_org)
    state = state_guard(desired, current, prune)
    warnings = []
    if pruned["tripped"]:
        warnings.append("prune guard: " + "; ".join(pruned["reasons"]) + " — apply refuses without --allow-mass-delete")
    if state["tripped"]:
        warnings.append("state guard: " + "; ".join(state["reasons"]) + ": " + ", ".join(state["stopped_agents"])
                        + " — apply refuses without --allow-mass-delete")
    guard = {
        "tripped": pruned["tripped"] or state["tripped"],
        "tripped_by": [name for name, verdict in (("prune", pruned), ("state", state)) if verdict["tripped"]],
        "reasons": [*pruned["reasons"], *state["reasons"]],
        "deleted_agents": pruned["deleted_agents"],
        "stopped_agents": state["stopped_agents"],
    }
    return guard, warnings


def guard_names(guard: Mapping[str, Any]) -> str:
    """Which guard stopped a plan, for people: `prune guard`, `state guard`, or both (a plan made before the
    state guard existed names no guard: the prune guard)."""
    names = [f"{n} guard" for n in guard.get("tripped_by") or ("prune",)]
    return " and the ".join(names)
