"""Issue 3's acceptance: on example-org, a plan against the unedited org states exactly what an edit changed.

Each scenario edits a copy of example-org, plans it against the original as an offline directory baseline,
and checks the org-level summary, the access diff and the object changes — and that nothing else moved.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops import pipeline as engine
from gitops.plan.model import Action, Plan
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource

EXAMPLE = Path(__file__).resolve().parent.parent / "example-org"
D = "matrix-local.hiclaw.io:8080"


def mx(local: str) -> str:
    return f"@{local}:{D}"


def room(alias: str) -> str:
    return f"#{alias}:{D}"


def edit(path: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def plan_after(tmp_path: Path, change: Callable[[Path], None]) -> Plan:
    base, head = tmp_path / "base", tmp_path / "head"
    shutil.copytree(EXAMPLE, base)
    shutil.copytree(EXAMPLE, head)
    change(head)
    settings = Settings()
    head_read = engine.read_org(DirectorySource(head))
    assert head_read.ok, head_read.validation.diagnostics
    baseline = engine.baseline_of(engine.read_org(DirectorySource(base)), settings.with_all_providers(), "directory")
    return engine.plan(head_read, settings, baseline, all_providers=True)


def summaries(plan: Plan) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {s.ref: (s.status, s.details) for s in plan.summaries}


def changed(plan: Plan) -> dict[str, str]:
    return {c.key: c.action.value for c in plan.changes if c.action is not Action.NOOP}


def rooms_of(plan: Plan) -> dict[str, tuple[set[str], set[str]]]:
    """Room alias -> (members added, members removed)."""
    return {r.room: (set(r.members.added), set(r.members.removed)) for r in plan.access.rooms}


def lists_of(plan: Plan) -> dict[str, tuple[set[str], set[str]]]:
    """Agent -> (who it newly accepts in groups, who it no longer accepts in groups)."""
    return {a.agent: (set(a.group.added), set(a.group.removed)) for a in plan.access.agents}


def principal(plan: Plan, who: str) -> Any:
    return next(p for p in plan.access.principals if p.id == who)


def test_unchanged_org_plans_nothing(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: None)
    assert not plan.has_changes and plan.summaries == () and not plan.access


def test_add_a_worker_to_a_team(tmp_path: Path) -> None:
    def add(head: Path) -> None:
        edit(head / "teams/frontend-team.yaml",
             lambda d: d[0]["spec"]["workers"].append({"name": "fe-perf", "model": "qwen3.6-plus"}))

    plan = plan_after(tmp_path, add)
    assert summaries(plan) == {"Team/frontend-team": (
        "updated", ("+worker fe-perf", "restarts 4 agents: fe-dev, fe-qa, fe-ui, frontend-lead"))}
    assert all(not removed for _, removed in rooms_of(plan).values())
    assert all(not removed for _, removed in lists_of(plan).values())
    assert rooms_of(plan)[room("hiclaw-team-frontend-team")] == ({mx("fe-perf")}, set())
    new_room = rooms_of(plan)[room("hiclaw-worker-fe-perf")][0]  # a new room: leader and team admin meet there
    assert mx("fe-perf") in new_room and mx("frontend-lead") in new_room
    # peers accept fe-perf (peerMentions defaults to true), and so does the leader
    assert mx("fe-perf") in lists_of(plan)[mx("fe-dev")][0]
    assert mx("fe-perf") in lists_of(plan)[mx("frontend-lead")][0]
    assert principal(plan, mx("fe-perf")).reaches_gained.count >= 3
    created = {k for k, a in changed(plan).items() if a == "create"}
    assert created == {
        "matrix/user/fe-perf",
        "matrix/room/hiclaw-worker-fe-perf",
        "gateway/consumer/worker-fe-perf",
        "gateway/ai-route-grant/default-ai-route:worker-fe-perf",  # its own grant: no other agent's route entry moves
        "storage/object/agents/fe-perf/openclaw.json",
        "storage/area/agents/fe-perf",
        "storage/user/fe-perf",  # offline plans show the identity a real store would get (SPEC §3.4)
        "runtime/container/hiclaw-worker-fe-perf",
    }
    # peers and the leader get new allow-lists: config updates (restart), never re-creation
    assert "replace" not in changed(plan).values()
    assert changed(plan)["runtime/container/hiclaw-worker-fe-dev"] == "update"


def test_move_a_worker_between_teams(tmp_path: Path) -> None:
    def move(head: Path) -> None:
        moved: list[dict[str, Any]] = []

        def take(d: list[dict[str, Any]]) -> None:
            workers = d[0]["spec"]["workers"]
            moved.extend(w for w in workers if w["name"] == "fe-qa")
            workers.remove(moved[0])

        edit(head / "teams/frontend-team.yaml", take)
        edit(head / "teams/data-team.yaml", lambda d: d[0]["spec"]["workers"].append(moved[0]))

    plan = plan_after(tmp_path, move)
    assert summaries(plan) == {
        "Team/data-team": ("updated", ("+worker fe-qa", "restarts 1 agent: data-lead", "re-creates 1 agent: fe-qa")),
        "Team/frontend-team": ("updated", ("-worker fe-qa", "restarts 3 agents: fe-dev, fe-ui, frontend-lead")),
    }
    assert mx("fe-qa") in rooms_of(plan)[room("hiclaw-team-frontend-team")][1]
    assert mx("fe-qa") in rooms_of(plan)[room("hiclaw-team-data-team")][0]
    assert mx("fe-qa") in lists_of(plan)[mx("fe-dev")][1]
    assert mx("fe-qa") in lists_of(plan)[mx("data-lead")][0]
    moved = principal(plan, mx("fe-qa"))
    assert moved.kind == "agent" and moved.rooms_gained.count == moved.rooms_lost.count == 1
    # identity is kept: same account, same storage, same consumer; only the container moves team
    assert not any(k.startswith(("matrix/user/", "gateway/consumer/")) for k in changed(plan))
    assert changed(plan)["runtime/container/hiclaw-worker-fe-qa"] == "replace"  # its team label changed
    assert changed(plan)["matrix/room/hiclaw-worker-fe-qa"] == "update"  # new leader and team admin


def test_change_a_humans_level_from_2_to_3(tmp_path: Path) -> None:
    def demote(head: Path) -> None:
        def change(d: list[dict[str, Any]]) -> None:
            d[0]["spec"]["permissionLevel"] = 3
            d[0]["spec"].pop("accessibleTeams")  # level 3 cannot keep team access (R408)

        edit(head / "humans/chen.yaml", change)

    plan = plan_after(tmp_path, demote)
    assert summaries(plan)["Human/chen"] == ("updated", ("-accessibleTeams data-team", "permissionLevel 2 → 3"))
    assert set(summaries(plan)) == {"Human/chen", "Team/data-team"}  # the team's room and allow-lists lose chen
    assert summaries(plan)["Team/data-team"][0] == "affected"
    assert rooms_of(plan) == {room("hiclaw-team-data-team"): (set(), {mx("chen")})}
    assert all(added == set() and removed <= {mx("chen")} for added, removed in lists_of(plan).values())
    chen = principal(plan, mx("chen"))
    assert chen.rooms_gained.count == 0 and chen.rooms_lost.examples == (room("hiclaw-team-data-team"),)
    # still reaches the worker it was granted: its room and allow-lists are not in the change
    assert room("hiclaw-worker-docs-writer") not in rooms_of(plan) and mx("docs-writer") not in lists_of(plan)


def test_flip_peer_mentions(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "teams/frontend-team.yaml", lambda d: d[0]["spec"].__setitem__("peerMentions", False)))
    assert summaries(plan) == {"Team/frontend-team": (
        "updated", ("peerMentions true → false", "restarts 3 agents: fe-dev, fe-qa, fe-ui"))}
    workers = {mx(w) for w in ("fe-dev", "fe-ui", "fe-qa")}
    assert rooms_of(plan) == {}  # nobody joins or leaves a room
    assert lists_of(plan) == {w: (set(), workers - {w}) for w in workers}  # each stops accepting the 2 others
    assert set(changed(plan).values()) == {"update"}


def test_add_a_team_admin(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "teams/data-team.yaml", lambda d: d[0]["spec"].__setitem__("admin", {"name": "chen"})))
    assert summaries(plan) == {"Team/data-team": (
        "updated", ("admin.name set to chen", "restarts 2 agents: data-analyst, etl-engineer"))}
    dm_room = room("hiclaw-leader-dm-data-lead")
    assert rooms_of(plan)[dm_room] == ({mx("chen")}, {mx("admin")})  # the team admin replaces the Global Admin
    assert all(added <= {mx("chen")} and removed <= {mx("admin")} for added, removed in rooms_of(plan).values())
    # data-team's channelPolicy has dmDenyExtra [chen]: deny wins, even for the team admin
    assert not any(mx("chen") in a.dm.added for a in plan.access.agents)
    # a person joining a team-private room is a warning every view shows
    assert f"access: {mx('chen')} added to the private room {dm_room}" in plan.warnings
    assert "matrix/room/hiclaw-leader-dm-data-lead" in changed(plan)
    assert "matrix/room/hiclaw-worker-fe-dev" not in changed(plan)  # other teams untouched


@pytest.mark.parametrize("runtime", ["hermes", "openclaw"])
def test_switch_a_workers_runtime_keeps_its_identity(tmp_path: Path, runtime: str) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "workers/docs-writer.yaml", lambda d: d[0]["spec"].__setitem__("runtime", runtime)))
    assert summaries(plan) == {"Worker/docs-writer": (
        "updated", (f"runtime copaw → {runtime}", "re-creates 1 agent: docs-writer"))}
    assert not plan.access
    replaced = {k for k, a in changed(plan).items() if a == "replace"}
    assert replaced == {"runtime/container/hiclaw-worker-docs-writer"}
    # the same Matrix account, storage prefix and gateway consumer: nothing of them changes
    assert not any(k.startswith(("matrix/", "gateway/")) for k in changed(plan))


def test_an_outside_identity_on_a_teams_group_allow_list_is_shown_and_warned(tmp_path: Path) -> None:
    """Issue 9's reproduction: an entry under groupAllowExtra reaches every member's group allow-list without
    joining any room; the plan must show it and warn."""
    contractor = "@contractor:evil.example.com"
    plan = plan_after(tmp_path, lambda head: edit(
        head / "teams/data-team.yaml",
        lambda d: d[0]["spec"]["channelPolicy"]["groupAllowExtra"].append(contractor)))
    gained = {agent for agent, (added, _) in lists_of(plan).items() if contractor in added}
    assert gained == {mx("data-lead"), mx("etl-engineer"), mx("data-analyst")}  # the leader and both workers
    assert rooms_of(plan) == {}  # no room changes: only allow-lists
    who = principal(plan, contractor)
    assert who.kind == "outside" and who.reaches_gained.count == 3
    warning = next(w for w in plan.warnings if contractor in w)
    assert "outside the server's domain" in warning and "can now address 3 agents" in warning


def test_a_human_raised_to_level_1_is_a_warning_and_so_is_its_validation_warning(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "humans/chen.yaml", lambda d: d[0]["spec"].__setitem__("permissionLevel", 1)))
    assert any(w.startswith("access: Human/chen is raised to level 1") for w in plan.warnings)
    assert any(": R409: " in w for w in plan.warnings)  # level 1 with access lists (ignored): in the plan too
    chen = principal(plan, mx("chen"))
    assert chen.rooms_gained.count > 1 and chen.reaches_gained.count > 1


def test_an_agent_that_loses_its_manager_is_a_warning(tmp_path: Path) -> None:
    def deny(d: list[dict[str, Any]]) -> None:
        d[0]["spec"]["channelPolicy"] = {"groupDenyExtra": ["manager"], "dmDenyExtra": ["manager"]}

    plan = plan_after(tmp_path, lambda head: edit(head / "workers/docs-writer.yaml", deny))
    assert f"access: {mx('docs-writer')} loses its Manager ({mx('manager')}): they can no longer address it" in (
        plan.warnings)


def test_the_actor_being_the_global_admin_is_a_warning_when_access_changes(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "teams/frontend-team.yaml", lambda d: d[0]["spec"].__setitem__("peerMentions", False)))
    assert any("the actor is the Global Admin" in w for w in plan.warnings)  # default settings: actor = admin
    assert plan.access.actor == mx("admin")
    quiet = plan_after(tmp_path / "again", lambda head: None)
    assert not any("actor" in w for w in quiet.warnings)  # no access change, no warning
