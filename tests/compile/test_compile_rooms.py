"""Rooms (SPEC §3.2 table, §3.3 humans): exact members and power levels of the six room kinds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gitops.objects import DesiredState
from gitops.settings.model import MatrixSettings

from .orgs import ACME, ALL, BOT, D, compiled, human, manager, member, members, power, spec, team, uid, worker

STATE = compiled(*ACME)
DEFAULT_ACTOR = replace(ALL, matrix=MatrixSettings())


def rooms_of(state: DesiredState, who: str) -> set[str]:
    return {k.split("/")[2] for k, o in state.objects.items() if o.type == "room" and uid(who) in o.spec["members"]}


# (alias localpart, members, power 100) — the SPEC table, row by row, for a team with and without a Team Admin.
TABLE = [
    ("hiclaw-manager-default", {"admin", "manager"}, {"admin", "manager"}),
    ("hiclaw-worker-alice", {"admin", "manager", "alice", "olivia", "chen", "lena"}, {"admin", "manager"}),
    ("hiclaw-worker-bob", {"admin", "manager", "bob", "olivia"}, {"admin", "manager"}),
    ("hiclaw-worker-lead", {"admin", "manager", "lead", "olivia"}, {"admin", "manager"}),
    ("hiclaw-team-web", {"priya", "lead", "dev", "qa", "sam", "olivia"}, {"priya", "lead"}),
    ("hiclaw-worker-dev", {"lead", "priya", "dev"}, {"priya", "lead"}),
    ("hiclaw-worker-qa", {"lead", "priya", "qa"}, {"priya", "lead"}),
    ("hiclaw-leader-dm-lead", {"priya", "lead"}, {"priya", "lead"}),
    ("hiclaw-worker-dlead", {"admin", "manager", "dlead", "olivia"}, {"admin", "manager"}),
    ("hiclaw-team-data", {"admin", "dlead", "etl", "bi", "olivia", "chen"}, {"admin", "dlead"}),
    ("hiclaw-worker-etl", {"dlead", "admin", "etl"}, {"admin", "dlead"}),
    ("hiclaw-worker-bi", {"dlead", "admin", "bi"}, {"admin", "dlead"}),
    ("hiclaw-leader-dm-dlead", {"admin", "dlead"}, {"admin", "dlead"}),
]


@pytest.mark.parametrize(("room", "expected_members", "expected_power"), TABLE, ids=[r[0] for r in TABLE])
def test_room_table_row(room: str, expected_members: set[str], expected_power: set[str]) -> None:
    assert members(STATE, room) == expected_members
    assert power(STATE, room) == expected_power


def test_no_other_rooms_than_the_table() -> None:
    assert {k.split("/")[2] for k, o in STATE.objects.items() if o.type == "room"} == {r[0] for r in TABLE}


def test_room_spec_alias_name_preset_and_direct_flag() -> None:
    assert spec(STATE, "matrix/room/hiclaw-team-web") | {"members": [], "power": {}} == {
        "alias": f"#hiclaw-team-web:{D}",
        "name": "Team: web",
        "preset": "private_chat",
        "is_direct": False,
        "members": [],
        "power": {},
    }
    assert spec(STATE, "matrix/room/hiclaw-worker-alice")["name"] == "Worker: alice"
    assert spec(STATE, "matrix/room/hiclaw-leader-dm-lead")["name"] == "Leader DM: lead"
    assert spec(STATE, "matrix/room/hiclaw-manager-default")["name"] == "Manager: default"
    direct = {k for k, o in STATE.objects.items() if o.type == "room" and o.spec["is_direct"]}
    assert direct == {
        "matrix/room/hiclaw-manager-default",
        "matrix/room/hiclaw-leader-dm-lead",
        "matrix/room/hiclaw-leader-dm-dlead",
    }


def test_actor_is_a_member_of_every_room_with_power_100() -> None:
    for obj in STATE.objects.values():
        if obj.type == "room":
            assert uid(BOT) in obj.spec["members"]
            assert obj.spec["power"][uid(BOT)] == 100


def test_default_actor_is_the_admin_and_joins_team_rooms_as_actor() -> None:
    state = compiled(*ACME, settings=DEFAULT_ACTOR)
    assert uid("admin") in spec(state, "matrix/room/hiclaw-team-web")["members"]
    assert uid("admin") not in state.access.rooms[f"#hiclaw-team-web:{D}"]


def test_the_manager_is_never_in_team_rooms_or_team_worker_rooms() -> None:
    assert rooms_of(STATE, "manager") == {
        "hiclaw-manager-default",
        "hiclaw-worker-alice",
        "hiclaw-worker-bob",
        "hiclaw-worker-lead",
        "hiclaw-worker-dlead",
    }


def test_level_1_human_is_in_every_shared_room_and_no_private_one() -> None:
    assert rooms_of(STATE, "olivia") == {
        "hiclaw-worker-alice",
        "hiclaw-worker-bob",
        "hiclaw-worker-lead",
        "hiclaw-worker-dlead",
        "hiclaw-team-web",
        "hiclaw-team-data",
    }


def test_level_2_human_is_in_its_team_rooms_and_its_workers_rooms() -> None:
    assert rooms_of(STATE, "chen") == {"hiclaw-team-data", "hiclaw-worker-alice"}


def test_level_3_human_is_in_its_workers_rooms_only() -> None:
    assert rooms_of(STATE, "lena") == {"hiclaw-worker-alice"}


def test_human_members_join_the_team_room_whatever_their_level() -> None:
    assert rooms_of(STATE, "sam") == {"hiclaw-team-web"}


def test_team_admin_is_only_in_the_teams_private_rooms_and_its_granted_team_room() -> None:
    assert rooms_of(STATE, "priya") == {
        "hiclaw-team-web",
        "hiclaw-worker-dev",
        "hiclaw-worker-qa",
        "hiclaw-leader-dm-lead",
    }


def test_without_a_manager_rooms_have_no_manager_and_there_is_no_manager_dm() -> None:
    state = compiled(worker("alice"), team("data", leader="dlead", workers=("etl",)))
    assert "matrix/room/hiclaw-manager-default" not in state.objects
    assert members(state, "hiclaw-worker-alice") == {"admin", "alice"}
    assert power(state, "hiclaw-worker-alice") == {"admin"}
    assert members(state, "hiclaw-worker-dlead") == {"admin", "dlead"}


def test_manager_dm_is_named_after_the_manager_resource() -> None:
    state = compiled(manager("ops"))
    assert members(state, "hiclaw-manager-ops") == {"admin", "manager"}


def test_rooms_use_runtime_names() -> None:
    state = compiled(
        worker("alice", workerName="alice-rt"),
        team("web", teamName="web-rt", leader=member("lead", workerName="lead-rt")),
    )
    assert members(state, "hiclaw-worker-alice-rt") == {"admin", "alice-rt"}
    assert members(state, "hiclaw-team-web-rt") == {"admin", "lead-rt", "dev"}
    assert members(state, "hiclaw-leader-dm-lead-rt") == {"admin", "lead-rt"}


def test_room_depends_on_the_accounts_of_its_managed_members() -> None:
    state = compiled(worker("alice"), human("olivia", 1), human("ext", 1, {"matrix-user-id": "@ext:elsewhere.org"}))
    room = state.objects["matrix/room/hiclaw-worker-alice"]
    assert "@ext:elsewhere.org" in room.spec["members"]
    assert room.depends_on == ("matrix/user/alice", "matrix/user/olivia")
