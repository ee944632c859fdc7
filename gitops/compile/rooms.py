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
from gitops.compile.identities import Chart, managed
from gitops.objects import ManagedObject, Provider
from gitops.org import Resource


@dataclass(frozen=True, slots=True)
class Room:
    localpart: str  # alias localpart, e.g. hiclaw-worker-alice
    name: str
    direct: bool
    members: frozenset[str]
    power: frozenset[str]
    owner: Resource


def rooms(chart: Chart, reach: Reach) -> list[Room]:
    admin = chart.admin
    manager = chart.manager_id
    authority = frozenset({admin, manager} if manager else {admin})  # Admin, Manager (if any)
    out: list[Room] = []
    if chart.manager:  # Manager DM
        name = chart.manager.name
        out.append(Room(f"hiclaw-manager-{name}", f"Manager: {name}", True, authority, authority, chart.manager.owner))
    for worker in chart.standalone:  # Standalone Worker rooms
        members = authority | {chart.id(worker)} | reach.worker(worker.name)
        out.append(_worker_room(worker.runtime_name, members, authority, worker.owner))
    for team in chart.teams:
        owner = team.resource
        leader = chart.id(team.leader)
        heads = frozenset({team.admin or admin, leader})  # T-Admin, Leader
        workers = frozenset(chart.id(w) for w in team.workers)
        lead_rt = team.leader.runtime_name
        # Leader room
        out.append(_worker_room(lead_rt, authority | {leader} | reach.everywhere, authority, owner))
        # Team Room: never the Manager
        team_room = heads | workers | team.human_members | reach.team(team.name)
        trt = team.runtime_name
        out.append(Room(f"hiclaw-team-{trt}", f"Team: {trt}", False, team_room, heads, owner))
        # Team worker rooms
        for worker in team.workers:
            out.append(_worker_room(worker.runtime_name, heads | {chart.id(worker)}, heads, owner))
        # Leader DM
        out.append(Room(f"hiclaw-leader-dm-{lead_rt}", f"Leader DM: {lead_rt}", True, heads, heads, owner))
    return out


def _worker_room(rt: str, members: frozenset[str], power: frozenset[str], owner: Resource) -> Room:
    return Room(f"hiclaw-worker-{rt}", f"Worker: {rt}", False, members, power, owner)


def alias(room: Room, chart: Chart) -> str:
    return f"#{room.localpart}:{chart.domain}"


def room_objects(rooms: list[Room], chart: Chart, users: Mapping[str, str]) -> list[ManagedObject]:
    """`matrix/room/<alias localpart>`, depending on the accounts of its managed members."""
    out: list[ManagedObject] = []
    for room in rooms:
        # The actor creates the room and keeps power to repair it, so it is always a member with power 100.
        members = sorted(room.members | {chart.actor})
        spec = {
            "alias": alias(room, chart),
            "name": room.name,
            "preset": "private_chat",
            "is_direct": room.direct,
            "members": members,
            "power": dict.fromkeys(sorted(room.power | {chart.actor}), 100),
        }
        needs = [users[m] for m in members if m in users]
        out.append(managed(Provider.MATRIX, "room", room.localpart, spec, room.owner, needs))
    return out
