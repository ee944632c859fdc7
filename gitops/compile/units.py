"""Compile units: the org split by owner — the Manager, each standalone Worker, each Team — each compiled from a
small scope that holds everything its objects depend on, and nothing else.

A unit's function reads only its scope, so its result is a function of the scope, and `Scope.key()` — a digest
of the whole scope and of the compiler's own source — identifies the result: `gitops.compile.cache` reuses it
whenever the key is the same. What every unit sees (settings, server identities, whether there is a Manager,
level-1 humans and their accounts) is in `Shared`, digested once per compile.

| Unit    | Its own scope                                          | Objects of each of its agents, and        |
|---------|--------------------------------------------------------|-------------------------------------------|
| Manager | the Manager; IDs of the standalone Workers and Leaders | its DM                                    |
| Worker  | the Worker; level-2/3 humans granted it                | its room; ports                           |
| Team    | the Team (leader, workers, admin, human members);       | the four room kinds; the team's keep file |
|         | level-2 humans granted it                              |                                           |

An agent's objects are its account, files, storage identity, consumer and container. A Worker's and a Team's
scope also hold the account keys of their rooms' members beyond the shared ones (rooms depend on accounts).

Humans' accounts, the bucket, shared prefixes and the gateway's route and MCP grants span the org: they are
built every time from the units' results (the grants from each unit's `consumers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from gitops.compile.allowlists import AllowList, manager_allow, team_allow, worker_allow
from gitops.compile.gateway import Consumer, consumer_objects, consumer_of
from gitops.compile.identities import Identities, Team, agent_user
from gitops.compile.rooms import Room, alias, manager_room, room_object, team_rooms, worker_room
from gitops.compile.runtime import agent_container
from gitops.compile.storage import agent_files, file_objects, storage_identity, storage_users, stored, team_keep
from gitops.objects import ManagedObject, Provider, canonical_json
from gitops.org import Agent, Resource
from gitops.settings.model import Settings


@dataclass(frozen=True, slots=True)
class UnitResult:
    """A unit's objects by kind (assembled in this order, as the whole-org compile always did), and what the
    org-wide parts need from it: its rooms' members and agents' allow-lists (access report), its consumers."""

    users: tuple[ManagedObject, ...] = ()
    rooms: tuple[ManagedObject, ...] = ()
    keeps: tuple[ManagedObject, ...] = ()
    files: tuple[ManagedObject, ...] = ()
    identities: tuple[ManagedObject, ...] = ()
    gateway: tuple[ManagedObject, ...] = ()
    containers: tuple[ManagedObject, ...] = ()
    members: tuple[tuple[str, frozenset[str], frozenset[str], bool], ...] = ()  # alias, members, power, private
    allow: AllowSets = ()
    consumers: tuple[Consumer, ...] = ()


@dataclass(frozen=True, slots=True)
class Shared:
    """What every unit sees. `digest` covers all of it and the compiler's source."""

    settings: Settings
    ids: Identities
    everywhere: frozenset[str]  # level-1 humans
    accounts: Mapping[str, str]  # account keys of the admin, actor, Manager and level-1 humans that have one
    digest: str = field(default="", compare=False)

    @classmethod
    def of(cls, settings: Settings, ids: Identities, everywhere: frozenset[str], accounts: Mapping[str, str]) -> Shared:
        known = {ids.admin, ids.actor, *([ids.manager_id] if ids.manager_id else []), *everywhere}
        own = {m: accounts[m] for m in sorted(known) if m in accounts}
        data = [code_digest(), repr(settings), ids.domain, ids.admin, ids.actor, ids.manager_id, sorted(everywhere),
                sorted(own.items())]
        return cls(settings, ids, everywhere, own, _digest(data))


class Unkeyable(Exception):
    """A scope holding a value with no canonical form (not plain JSON data): it is compiled, never cached."""


@dataclass(frozen=True, slots=True)
class ManagerScope:
    shared: Shared
    agent: Agent
    answered: tuple[str, ...]  # IDs of the standalone Workers and Leaders, in org order

    def key(self) -> str:
        return _digest(["manager", self.shared.digest, *_resource(self.agent.owner), list(self.answered)])

    def compile(self) -> UnitResult:
        ids = self.shared.ids
        allow = manager_allow(ids, self.shared.everywhere, self.answered)
        return _agents_result(self.shared, [(self.agent, allow)], [manager_room(ids, self.agent)], {}, None)


@dataclass(frozen=True, slots=True)
class WorkerScope:
    shared: Shared
    agent: Agent
    granted: frozenset[str]  # level-2/3 humans granted this Worker
    accounts: Mapping[str, str]  # account keys of its room's members, beyond the shared ones

    def key(self) -> str:
        data = ["worker", self.shared.digest, *_resource(self.agent.owner), sorted(self.granted),
                sorted(self.accounts.items())]
        return _digest(data)

    def compile(self) -> UnitResult:
        shared, agent = self.shared, self.agent
        humans = shared.everywhere | self.granted
        allow = worker_allow(shared.ids, agent, humans)
        return _agents_result(shared, [(agent, allow)], [worker_room(shared.ids, agent, humans)], self.accounts, None)


@dataclass(frozen=True, slots=True)
class TeamScope:
    shared: Shared
    team: Team
    granted: frozenset[str]  # level-2 humans granted this team
    accounts: Mapping[str, str]  # account keys of its rooms' members, beyond the shared ones

    def key(self) -> str:
        team = self.team
        data = ["team", self.shared.digest, *_resource(team.resource), team.admin, sorted(team.human_members),
                sorted(self.granted), sorted(self.accounts.items())]
        return _digest(data)

    def compile(self) -> UnitResult:
        shared, team = self.shared, self.team
        humans = shared.everywhere | self.granted
        lists = team_allow(shared.ids, team, humans)
        agents = [team.leader, *team.workers]
        planned = team_rooms(shared.ids, team, shared.everywhere, humans)
        return _agents_result(shared, [(a, lists[a.runtime_name]) for a in agents], planned, self.accounts, team)


Scope = ManagerScope | WorkerScope | TeamScope


def room_members(ids: Identities, team: Team | None, agent: Agent | None, humans: Iterable[str]) -> set[str]:
    """Every ID that can be a member of a unit's rooms beyond the shared ones: whose accounts its scope holds."""
    out = set(humans)
    if agent is not None:
        out.add(ids.id(agent))
    if team is not None:
        out.update(ids.id(a) for a in (team.leader, *team.workers))
        out.update(team.human_members)
        if team.admin:
            out.add(team.admin)
    return out


def _agents_result(
    shared: Shared,
    agents: list[tuple[Agent, AllowList]],
    planned: list[Room],
    accounts: Mapping[str, str],
    team: Team | None,
) -> UnitResult:
    ids, settings = shared.ids, shared.settings
    enabled = settings.providers
    users = {**shared.accounts, **accounts}
    files = {a.runtime_name: stored(settings.bucket, agent_files(ids, a, allow, settings)) for a, allow in agents}
    teams = {team.name: team.runtime_name} if team is not None else {}
    matrix = Provider.MATRIX in enabled
    storage = Provider.STORAGE in enabled
    return UnitResult(
        users=tuple(agent_user(ids, a) for a, _ in agents) if matrix else (),
        rooms=tuple(room_object(room, ids, users) for room in planned) if matrix else (),
        keeps=(team_keep(team, settings),) if storage and team is not None else (),
        files=tuple(o for a, _ in agents for o in file_objects(a, files[a.runtime_name], settings)) if storage else (),
        identities=tuple(o for a, _ in agents for o in storage_identity(a, settings.bucket, teams))
        if storage and storage_users(settings)
        else (),
        gateway=tuple(o for a, _ in agents for o in consumer_objects(a)) if settings.gateway is not None else (),
        containers=tuple(
            c for c in (agent_container(ids, a, files[a.runtime_name], settings) for a, _ in agents) if c is not None
        )
        if Provider.RUNTIME in enabled
        else (),
        members=tuple((alias(room, ids), room.members, room.power, room.private) for room in planned),
        allow=_allow_sets(ids, agents),
        consumers=tuple(consumer_of(a, settings.gateway_or_default) for a, _ in agents),
    )


AllowSets = tuple[tuple[str, frozenset[str], frozenset[str]], ...]  # agent ID -> group, dm allow-lists


def _allow_sets(ids: Identities, agents: list[tuple[Agent, AllowList]]) -> AllowSets:
    """Allow-lists as sets for the access report; equal sets are one object (a team's workers share most)."""
    same: dict[tuple[str, ...], frozenset[str]] = {}

    def one(entries: tuple[str, ...]) -> frozenset[str]:
        found = same.get(entries)
        if found is None:
            found = same[entries] = frozenset(entries)
        return found

    return tuple((ids.id(a), one(allow.group), one(allow.dm)) for a, allow in agents)


def _resource(res: Resource) -> list[Any]:
    return [res.kind, res.name, res.spec, res.annotations]


def _digest(data: list[Any]) -> str:
    """SHA-256 of the canonical JSON of `data`; anything but plain data (a YAML date, a set) is Unkeyable."""
    try:
        text = canonical_json(data)
    except (TypeError, ValueError) as exc:
        raise Unkeyable(str(exc)) from exc
    return hashlib.sha256(text.encode()).hexdigest()


@cache
def code_digest() -> str:
    """The compiler's source: a changed compiler never reuses results cached by another version."""
    here = Path(__file__).resolve().parent
    root = here.parent
    sources = sorted(here.glob("*.py")) + [root / n for n in ("objects.py", "org.py", "settings/model.py")]
    h = hashlib.sha256()
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
