"""Small orgs for the compiler tests: resources built directly, and readable views of the compiled state."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from gitops.compile import compile_org
from gitops.objects import DesiredState, file_text
from gitops.org import Org, Resource
from gitops.settings.model import MatrixSettings, Settings, StorageSettings

D = "matrix-local.hiclaw.io:8080"
BOT = "hiclaw-bot"  # a dedicated actor, so rule members and the actor stay distinguishable

ALL = replace(Settings().with_all_providers(), matrix=MatrixSettings(actor_user=BOT))
ADMIN_API = replace(ALL, storage=StorageSettings(admin_api=True))
PLAIN_S3 = replace(ALL, storage=StorageSettings())  # a store with no identity API: no per-agent users


def uid(localpart: str) -> str:
    return f"@{localpart}:{D}"


def short(user_id: str) -> str:
    """`@alice:D` -> `alice`; IDs on other servers stay whole."""
    return user_id[1:].removesuffix(f":{D}") if user_id.endswith(f":{D}") else user_id


def res(kind: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> Resource:
    marks = {f"gitops.hiclaw.io/{k}": v for k, v in (annotations or {}).items()}
    return Resource(kind, name, spec, marks, f"{kind.lower()}s/{name}.yaml", 0, 1)


def worker(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> Resource:
    return res("Worker", name, {"model": "qwen3.6-plus", **spec}, annotations)


def member(name: str, **spec: Any) -> dict[str, Any]:
    return {"name": name, **spec}


def team(
    name: str,
    leader: str | dict[str, Any] = "lead",
    workers: tuple[str | dict[str, Any], ...] = ("dev",),
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> Resource:
    lead = member(leader) if isinstance(leader, str) else leader
    crew = [member(w) if isinstance(w, str) else w for w in workers]
    return res("Team", name, {"leader": lead, "workers": crew, **spec}, annotations)


def human(name: str, level: int, annotations: dict[str, str] | None = None, **spec: Any) -> Resource:
    return res("Human", name, {"displayName": name.title(), "permissionLevel": level, **spec}, annotations)


def manager(name: str = "default", **spec: Any) -> Resource:
    return res("Manager", name, {"model": "claude-sonnet-4-6", **spec})


def org(*resources: Resource) -> Org:
    tables: dict[str, dict[str, Resource]] = {"Worker": {}, "Team": {}, "Human": {}, "Manager": {}}
    for r in resources:
        tables[r.kind][r.name] = r
    return Org(tables["Worker"], tables["Team"], tables["Human"], tables["Manager"])


def compiled(*resources: Resource, settings: Settings = ALL) -> DesiredState:
    return compile_org(org(*resources), settings)


def spec(state: DesiredState, key: str) -> Any:
    return state.objects[key].spec


def members(state: DesiredState, room: str) -> set[str]:
    """The room's members by the rules (the actor, member of every room, left out)."""
    return {short(m) for m in spec(state, f"matrix/room/{room}")["members"]} - {BOT}


def power(state: DesiredState, room: str) -> set[str]:
    return {short(m) for m in spec(state, f"matrix/room/{room}")["power"]} - {BOT}


def file(state: DesiredState, key: str) -> str:
    return file_text(spec(state, f"storage/object/{key}"))


def openclaw(state: DesiredState, rt: str) -> Any:
    return json.loads(file(state, f"agents/{rt}/openclaw.json"))


def allowed(state: DesiredState, rt: str) -> tuple[set[str], set[str]]:
    """(group, dm) allow-lists of an agent, as short names."""
    matrix = openclaw(state, rt)["channels"]["matrix"]
    return {short(u) for u in matrix["groupAllowFrom"]}, {short(u) for u in matrix["dm"]["allowFrom"]}


def keys(state: DesiredState, prefix: str) -> set[str]:
    return {k.removeprefix(prefix) for k in state.objects if k.startswith(prefix)}


# A small org exercising every room kind and permission level: a Manager, two standalone Workers, a team with
# a Team Admin and a human member, a team without, and humans at each level.
ACME = (
    manager(),
    worker("alice"),
    worker("bob"),
    team("web", leader="lead", workers=("dev", "qa"), admin={"name": "priya"}, humanMembers=[{"name": "sam"}]),
    team("data", leader="dlead", workers=("etl", "bi")),
    human("olivia", 1),
    human("priya", 2, accessibleTeams=["web"]),
    human("chen", 2, accessibleTeams=["data"], accessibleWorkers=["alice"]),
    human("lena", 3, accessibleWorkers=["alice"]),
    human("sam", 3),
)
