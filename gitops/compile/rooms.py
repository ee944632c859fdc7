"""Matrix rooms (SPEC §3.2): the six room kinds, their exact members and who holds power 100.

| Room (alias)                          | Members                                                | Power 100          |
|---------------------------------------|--------------------------------------------------------|--------------------|
| Manager DM `hiclaw-manager-<name>`    | Admin, Manager                                         | Admin, Manager     |
| Worker room `hiclaw-worker-<rt>`      | Admin, Manager (if any), Worker, humans with access    | Admin, Manager     |
| Leader room `hiclaw-worker-<rt>`      | Global Admin, Manager (if any), Leader, level-1 humans | Admin, Manager     |
| Team Room `hiclaw-team-<team-rt>`     | T-Admin, Leader, workers, humanMembers, team's humans  | T-Admin, Leader    |
| Team worker room `hiclaw-worker-<rt>` | Leader, T-Admin, Worker                                | T-Admin, Leader    |
| Leader DM `hiclaw-leader-dm-<rt>`     | T-Admin, Leader                                        | T-Admin, Leader    |

T-Admin is the Team Admin when the team names one, else the Global Admin.

`Room.members` is exactly the table. The actor additionally joins every room it manages (it creates them and
sets their state) with power 100; the access report lists it apart, exempt from these rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gitops.compile.humans import Reach
from gitops.compile.identities import Chart, Identities, Team, managed
from gitops.objects import ManagedObject, Provider
from gitops.org import Agent, Resource


@dataclass(frozen=True, slots=True)
class Room:
    localpart: str  # alias localpart, e.g. hiclaw-worker-alice
    name: str
    direct: bool
    members: frozenset[str]
    power: frozenset[str]
    owner: Resource
    private: bool = False  # a DM or a team worker room: humans are not added by access grants


def rooms(chart: Chart, reach: Reach) -> list[Room]:
    ids = chart.identities
    out: list[Room] = []
    if chart.manager:
        out.append(manager_room(ids, chart.manager))
    out.extend(worker_room(ids, worker, reach.worker(worker.name)) for worker in chart.standalone)
    for team in chart.teams:
        out.extend(team_rooms(ids, team, reach.everywhere, reach.team(team.name)))
    return out


def _authority(ids: Identities) -> frozenset[str]:
    """Admin, Manager (if any)."""
    return frozenset({ids.admin, ids.manager_id} if ids.manager_id else {ids.admin})


def manager_room(ids: Identities, manager: Agent) -> Room:
    """Manager DM."""
    name, authority = manager.name, _authority(ids)
    return Room(f"hiclaw-manager-{name}", f"Manager: {name}", True, authority, authority, manager.owner, True)


def worker_room(ids: Identities, worker: Agent, humans: frozenset[str]) -> Room:
    """Standalone Worker room; `humans` are those with access to the Worker."""
    authority = _authority(ids)
    return _agent_room(worker.runtime_name, authority | {ids.id(worker)} | humans, authority, worker.owner)


def team_rooms(ids: Identities, team: Team, everywhere: frozenset[str], humans: frozenset[str]) -> list[Room]:
    """Leader room, Team Room, team worker rooms, Leader DM; `humans` are those with access to the team."""
    authority = _authority(ids)
    owner = team.resource
    leader = ids.id(team.leader)
    heads = frozenset({team.admin or ids.admin, leader})  # T-Admin, Leader
    workers = frozenset(ids.id(w) for w in team.workers)
    lead_rt = team.leader.runtime_name
    out = [_agent_room(lead_rt, authority | {leader} | everywhere, authority, owner)]  # Leader room
    team_room = heads | workers | team.human_members | humans  # never the Manager
    trt = team.runtime_name
    out.append(Room(f"hiclaw-team-{trt}", f"Team: {trt}", False, team_room, heads, owner))
    out.extend(_agent_room(w.runtime_name, heads | {ids.id(w)}, heads, owner, private=True) for w in team.workers)
    out.append(Room(f"hiclaw-leader-dm-{lead_rt}", f"Leader DM: {lead_rt}", True, heads, heads, owner, True))
    return out


def _agent_room(
    rt: str, members: frozenset[str], power: frozenset[str], owner: Resource, private: bool = False
) -> Room:
    return Room(f"hiclaw-worker-{rt}", f"Worker: {rt}", False, members, power, owner, private)


def alias(room: Room, chart: Chart | Identities) -> str:
    return f"#{room.localpart}:{chart.domain}"


def room_object(room: Room, ids: Identities, users: Mapping[str, str]) -> ManagedObject:
    # The actor creates the room and keeps power to repair it, so it is always a member with power 100.
    members = sorted(room.members | {ids.actor})
    spec = {
        "alias": alias(room, ids),
        "name": room.name,
        "preset": "private_chat",
        "is_direct": room.direct,
        "members": members,
        "power": dict.fromkeys(sorted(room.power | {ids.actor}), 100),
    }
    needs = [users[m] for m in members if m in users]
    return managed(Provider.MATRIX, "room", room.localpart, spec, room.owner, needs)
