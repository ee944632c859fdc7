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


def involves(entries: tuple[tuple[str, str, str], ...], who: str) -> bool:
    return all(who in (sender, receiver) for sender, receiver, _ in entries)


def test_unchanged_org_plans_nothing(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: None)
    assert not plan.has_changes and plan.summaries == () and plan.access_gained == plan.access_lost == ()


def test_add_a_worker_to_a_team(tmp_path: Path) -> None:
    def add(head: Path) -> None:
        edit(head / "teams/frontend-team.yaml",
             lambda d: d[0]["spec"]["workers"].append({"name": "fe-perf", "model": "qwen3.6-plus"}))

    plan = plan_after(tmp_path, add)
    assert summaries(plan) == {"Team/frontend-team": ("updated", ("+worker fe-perf",))}
    assert plan.access_lost == ()
    new_room = room("hiclaw-worker-fe-perf")  # a new channel: leader and team admin meet there too
    assert plan.access_gained and all(mx("fe-perf") in e[:2] or e[2] == new_room for e in plan.access_gained)
    # peers may now mention fe-perf (peerMentions defaults to true) and the leader hears it
    assert (mx("fe-dev"), mx("fe-perf"), room("hiclaw-team-frontend-team")) in plan.access_gained
    assert (mx("fe-perf"), mx("frontend-lead"), room("hiclaw-team-frontend-team")) in plan.access_gained
    created = {k for k, a in changed(plan).items() if a == "create"}
    assert created == {
        "matrix/user/fe-perf",
        "matrix/room/hiclaw-worker-fe-perf",
        "gateway/consumer/worker-fe-perf",
        "storage/object/agents/fe-perf/openclaw.json",
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
        "Team/data-team": ("updated", ("+worker fe-qa",)),
        "Team/frontend-team": ("updated", ("-worker fe-qa",)),
    }
    assert involves(plan.access_gained, mx("fe-qa")) or all(
        e[2] == room("hiclaw-worker-fe-qa") for e in plan.access_gained if mx("fe-qa") not in e[:2]
    )
    assert (mx("fe-qa"), mx("fe-dev"), room("hiclaw-team-frontend-team")) in plan.access_lost
    assert (mx("fe-qa"), mx("data-lead"), room("hiclaw-team-data-team")) in plan.access_gained
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
    assert plan.access_gained == ()
    assert plan.access_lost and involves(plan.access_lost, mx("chen"))
    assert {e[2] for e in plan.access_lost} == {room("hiclaw-team-data-team")}
    # still reaches the worker it was granted
    assert not any(e[2] == room("hiclaw-worker-docs-writer") for e in plan.access_lost)


def test_flip_peer_mentions(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "teams/frontend-team.yaml", lambda d: d[0]["spec"].__setitem__("peerMentions", False)))
    assert summaries(plan) == {"Team/frontend-team": ("updated", ("peerMentions true → false",))}
    assert plan.access_gained == ()
    workers = {mx(w) for w in ("fe-dev", "fe-ui", "fe-qa")}
    assert len(plan.access_lost) == 6  # 3 workers, each loses the 2 others, in the Team Room only
    assert all(s in workers and r in workers and c == room("hiclaw-team-frontend-team") for s, r, c in plan.access_lost)
    assert set(changed(plan).values()) == {"update"}


def test_add_a_team_admin(tmp_path: Path) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "teams/data-team.yaml", lambda d: d[0]["spec"].__setitem__("admin", {"name": "chen"})))
    assert summaries(plan) == {"Team/data-team": ("updated", ("admin.name set to chen",))}
    assert plan.access_gained and involves(plan.access_gained, mx("chen"))
    assert (mx("chen"), mx("data-lead"), room("hiclaw-leader-dm-data-lead")) in plan.access_gained
    # data-team's channelPolicy has dmDenyExtra [chen]: deny wins, even for the team admin
    assert (mx("chen"), mx("data-lead"), "dm") not in plan.access_gained
    assert all(mx("admin") in e[:2] or mx("chen") in e[:2] for e in plan.access_lost)
    assert "matrix/room/hiclaw-leader-dm-data-lead" in changed(plan)
    assert "matrix/room/hiclaw-worker-fe-dev" not in changed(plan)  # other teams untouched


@pytest.mark.parametrize("runtime", ["hermes", "openclaw"])
def test_switch_a_workers_runtime_keeps_its_identity(tmp_path: Path, runtime: str) -> None:
    plan = plan_after(tmp_path, lambda head: edit(
        head / "workers/docs-writer.yaml", lambda d: d[0]["spec"].__setitem__("runtime", runtime)))
    assert summaries(plan) == {"Worker/docs-writer": ("updated", (f"runtime copaw → {runtime}",))}
    assert plan.access_gained == plan.access_lost == ()
    replaced = {k for k, a in changed(plan).items() if a == "replace"}
    assert replaced == {"runtime/container/hiclaw-worker-docs-writer"}
    # the same Matrix account, storage prefix and gateway consumer: nothing of them changes
    assert not any(k.startswith(("matrix/", "gateway/")) for k in changed(plan))
