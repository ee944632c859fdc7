"""example-org on a real Synapse: every room read back from the server as the Global Admin matches SPEC §3.2–3.3
(the table below is written from the SPEC, not from the compiler), a second pass writes nothing, and each change
of the org converges to exactly its membership diff."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from mxsite import ADMIN_PASSWORD, Inspector, Site, counts

from deploy.synapse import Synapse

ACTOR = "hiclaw-gitops"
D = "localhost"


def spec_rooms() -> dict[str, tuple[set[str], set[str]]]:
    """SPEC §3.2 for example-org: alias localpart -> (members, power 100), the actor aside.
    Humans: olivia level 1; chen level 2 (data-team, docs-writer); priya level 2 (frontend-team) and Team Admin
    of frontend-team; sam level 3 (docs-writer) and a humanMember of frontend-team; lena level 3 (support-bot,
    kb-curator). data-team names no admin: the Global Admin takes that place."""
    authority = {"admin", "manager"}
    rooms = {
        "hiclaw-manager-default": (authority, authority),
        "hiclaw-worker-docs-writer": (authority | {"docs-writer", "olivia", "chen", "sam"}, authority),
        "hiclaw-worker-release-manager": (authority | {"release-manager", "olivia"}, authority),
        "hiclaw-worker-support-bot": (authority | {"support-bot", "olivia", "lena"}, authority),
        "hiclaw-worker-kb-curator": (authority | {"kb-curator", "olivia", "lena"}, authority),
        # data-team: leader room, Team Room, worker rooms, Leader DM (Team Admin = Global Admin)
        "hiclaw-worker-data-lead": (authority | {"data-lead", "olivia"}, authority),
        "hiclaw-team-data-team": ({"admin", "data-lead", "etl-engineer", "data-analyst", "olivia", "chen"},
                                  {"admin", "data-lead"}),
        "hiclaw-worker-etl-engineer": ({"admin", "data-lead", "etl-engineer"}, {"admin", "data-lead"}),
        "hiclaw-worker-data-analyst": ({"admin", "data-lead", "data-analyst"}, {"admin", "data-lead"}),
        "hiclaw-leader-dm-data-lead": ({"admin", "data-lead"}, {"admin", "data-lead"}),
        # frontend-team (Team Admin priya, humanMember sam)
        "hiclaw-worker-frontend-lead": (authority | {"frontend-lead", "olivia"}, authority),
        "hiclaw-team-frontend-team": ({"priya", "frontend-lead", "fe-dev", "fe-ui", "fe-qa", "sam", "olivia"},
                                      {"priya", "frontend-lead"}),
        "hiclaw-worker-fe-dev": ({"priya", "frontend-lead", "fe-dev"}, {"priya", "frontend-lead"}),
        "hiclaw-worker-fe-ui": ({"priya", "frontend-lead", "fe-ui"}, {"priya", "frontend-lead"}),
        "hiclaw-worker-fe-qa": ({"priya", "frontend-lead", "fe-qa"}, {"priya", "frontend-lead"}),
        "hiclaw-leader-dm-frontend-lead": ({"priya", "frontend-lead"}, {"priya", "frontend-lead"}),
    }
    return {k: ({*m, ACTOR}, {*p, ACTOR}) for k, (m, p) in rooms.items()}


AGENTS = {"manager", "docs-writer", "release-manager", "support-bot", "kb-curator", "data-lead", "etl-engineer",
          "data-analyst", "frontend-lead", "fe-dev", "fe-ui", "fe-qa"}
HUMANS = {"olivia", "chen", "priya", "sam", "lena"}


def live(inspector: Inspector) -> dict[str, tuple[set[str], set[str]]]:
    return {k: (set(m), set(p)) for k, (m, p) in inspector.topology(D).items()}


def diff(before: dict[str, tuple[set[str], set[str]]], after: dict[str, tuple[set[str], set[str]]]) -> set[str]:
    """Membership and power changes as `±member room/user` and `±power room/user` lines."""
    out: set[str] = set()
    for room in set(before) | set(after):
        (m0, p0), (m1, p1) = before.get(room, (set(), set())), after.get(room, (set(), set()))
        out |= {f"+member {room}/{u}" for u in m1 - m0} | {f"-member {room}/{u}" for u in m0 - m1}
        out |= {f"+power {room}/{u}" for u in p1 - p0} | {f"-power {room}/{u}" for u in p0 - p1}
    return out


@pytest.fixture(scope="module")
def site(homeserver: Synapse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(homeserver, tmp_path_factory.mktemp("site"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def inspector(homeserver: Synapse) -> Inspector:
    return Inspector(homeserver)


def test_example_org_matches_the_spec(site: Site, inspector: Inspector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first = site.reconcile()
    assert counts(first) == {"create": 33}
    assert live(inspector) == spec_rooms()
    # Agents are joined (they were logged in to join); humans are invited, never joined on their behalf.
    for lp, rooms in inspector.rooms().items():
        for user, membership in rooms[0].members.items():
            name = user[1:].split(":")[0]
            expected = "join" if name in AGENTS | {ACTOR} else "invite"
            assert membership == expected, f"{lp}: {user} is {membership}, expected {expected}"
        assert rooms[0].creator == f"@{ACTOR}:{D}"
    # Every account exists; humans declared with their own Matrix ID would never be registered (none here).
    for name in AGENTS | HUMANS:
        account = inspector.account(f"@{name}:{D}")
        assert account is not None and not account["deactivated"], name
    # Tokens of agents are outputs in the secret store; humans get an initial password and no stored token.
    names = set(site.secrets.names())
    assert {f"matrix/{a}/token" for a in AGENTS} <= names
    assert not {f"matrix/{h}/token" for h in HUMANS} & names
    assert {f"matrix/{h}/password" for h in HUMANS} <= names
    # No generated credential in the plan, the run, or a log line.
    values = [*site.secret_values(), ADMIN_PASSWORD]
    text = json.dumps(first.to_dict()) + caplog.text
    leaked = sum(1 for v in values if v in text)  # a count: a failing assertion must not print a secret
    assert leaked == 0, f"{leaked} generated secret value(s) appear in the output"


def test_second_pass_makes_no_writes(site: Site) -> None:
    site.backend.http.reset_counters()
    again = site.reconcile()
    assert counts(again) == {}
    http = site.backend.http
    assert (http.writes, http.logins) == (0, 0), (http.writes, http.logins)
    assert http.reads <= 2, f"a no-op pass read {http.reads} times (one /sync, one account list expected)"


def change(site: Site, inspector: Inspector, edit: list[tuple[str, str, str]] | None = None) -> set[str]:
    before = live(inspector)
    for relative, old, new in edit or []:
        site.edit(relative, old, new)
    site.reconcile()
    after = live(inspector)
    site.backend.http.reset_counters()
    assert counts(site.reconcile()) == {}, "a second pass after the change must plan nothing"
    assert site.backend.http.writes == 0
    return diff(before, after)


def test_changes_that_do_not_touch_rooms_write_nothing(site: Site, inspector: Inspector) -> None:
    """peerMentions, a channelPolicy deny and a runtime switch change allow-lists and containers, never rooms:
    same account, same rooms."""
    site.backend.http.reset_counters()
    assert change(site, inspector, [
        ("teams/frontend-team.yaml", "peerMentions: true", "peerMentions: false"),
        ("teams/data-team.yaml", "dmDenyExtra:\n      - chen", "dmDenyExtra:\n      - chen\n      - lena"),
        ("teams/data-team.yaml", "runtime: hermes", "runtime: openclaw"),
    ]) == set()


def test_a_worker_moves_teams(site: Site, inspector: Inspector) -> None:
    path = site.org / "teams/frontend-team.yaml"
    text = path.read_text(encoding="utf-8")
    block = text[text.index("    - name: fe-qa"):]  # the last worker of the file
    path.write_text(text.replace(block, ""), encoding="utf-8")
    assert change(site, inspector, [("teams/data-team.yaml", "  workers:\n", "  workers:\n" + block)]) == {
        "-member hiclaw-team-frontend-team/fe-qa", "+member hiclaw-team-data-team/fe-qa",
        "-member hiclaw-worker-fe-qa/priya", "-member hiclaw-worker-fe-qa/frontend-lead",
        "+member hiclaw-worker-fe-qa/admin", "+member hiclaw-worker-fe-qa/data-lead",
        "-power hiclaw-worker-fe-qa/priya", "-power hiclaw-worker-fe-qa/frontend-lead",
        "+power hiclaw-worker-fe-qa/admin", "+power hiclaw-worker-fe-qa/data-lead",
    }


def test_a_team_gains_an_admin(site: Site, inspector: Inspector) -> None:
    """chen becomes data-team's Team Admin: chen takes the Global Admin's place in the team's rooms."""
    rooms = ["hiclaw-worker-etl-engineer", "hiclaw-worker-data-analyst", "hiclaw-worker-fe-qa",
             "hiclaw-leader-dm-data-lead", "hiclaw-team-data-team"]
    expected = {f"+member {r}/chen" for r in rooms if r != "hiclaw-team-data-team"}
    expected |= {f"-member {r}/admin" for r in rooms} | {f"+power {r}/chen" for r in rooms}
    expected |= {f"-power {r}/admin" for r in rooms}
    assert change(site, inspector, [("teams/data-team.yaml", "  peerMentions: false",
                                     "  peerMentions: false\n  admin:\n    name: chen")]) == expected


def test_a_human_goes_from_level_2_to_3(site: Site, inspector: Inspector) -> None:
    """priya: level 3 keeps no team access — she leaves the frontend Team Room as a level-2 human, but stays
    there and in its private rooms as the Team Admin; her `accessibleTeams` must go."""
    assert change(site, inspector, [
        ("humans/priya.yaml", "permissionLevel: 2", "permissionLevel: 3"),
        ("humans/priya.yaml", "accessibleTeams: [frontend-team]", "accessibleWorkers: [kb-curator]"),
    ]) == {"+member hiclaw-worker-kb-curator/priya"}


def test_a_worker_is_deleted(site: Site, inspector: Inspector) -> None:
    """support-bot goes: its room is closed (alias released, everyone removed), its account leaves every room."""
    path = site.org / "workers/support-desk.yaml"  # two Workers: support-bot, then kb-curator
    path.write_text(path.read_text(encoding="utf-8").split("\n---\n", 1)[1], encoding="utf-8")
    before = inspector.rooms()["hiclaw-worker-support-bot"][0]
    assert change(site, inspector, [("humans/lena.yaml", "[support-bot, kb-curator]", "[kb-curator]")]) == {
        "-member hiclaw-worker-support-bot/" + u for u in ("admin", "manager", "support-bot", "olivia", "lena",
                                                           ACTOR)
    } | {"-power hiclaw-worker-support-bot/" + u for u in ("admin", "manager", ACTOR)}
    closed = inspector.room(before.room_id)
    assert {u for u, m in closed.members.items() if m in ("join", "invite")} == {f"@{ACTOR}:{D}"}
    assert closed.name.endswith("(closed)")
    account = inspector.account(f"@support-bot:{D}")
    assert account is not None and not account["deactivated"], "deactivated only when the settings say so"


def test_lost_agent_token_is_issued_again(site: Site, inspector: Inspector, tmp_path: Path) -> None:
    old = site.secrets.peek("matrix/fe-dev/token")
    assert old
    site.secrets.delete("matrix/fe-dev/token")
    result = site.reconcile()
    assert counts(result) == {"update": 1}
    new = site.secrets.peek("matrix/fe-dev/token")
    assert new and new != old
    assert counts(site.reconcile()) == {}
