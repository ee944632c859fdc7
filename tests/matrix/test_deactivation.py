"""A removed agent on a real Synapse, read back through the admin API as the Global Admin: with
`matrix.deactivate_removed: true` its account is deactivated (and re-adding the agent reactivates it); by
default the account stays active but is in no room and has no session left. Each case on its own small team
(`<team>-lead`, `<team>-a`, `<team>-b`), so the cases share one homeserver without seeing each other."""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mxsite import ADMIN_PASSWORD, Inspector, Site, counts

from deploy.synapse import Synapse, SynapseError

TEAM = """apiVersion: hiclaw.io/v1beta1
kind: Team
metadata:
  name: {team}
spec:
  leader:
    name: {team}-lead
    model: qwen3.6-plus
  workers:
    - name: {team}-a
      model: qwen3.6-plus
"""
WORKER_B = """    - name: {team}-b
      model: qwen3.6-plus
"""


@pytest.fixture(scope="module")
def inspector(homeserver: Synapse) -> Inspector:
    return Inspector(homeserver)


@pytest.fixture
def team_site(homeserver: Synapse, tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """`team_site(team, **matrix settings)`: a Site reconciling one small team (`<team>-lead`, `-a`, `-b`)."""
    opened: list[Site] = []

    def make(team: str, **matrix: Any) -> Site:
        root = tmp_path / team
        org = root / "org-src"
        org.mkdir(parents=True)
        (org / "team.yaml").write_text(TEAM.format(team=team) + WORKER_B.format(team=team), encoding="utf-8")
        opened.append(Site(homeserver, root, org, **matrix))
        return opened[-1]

    yield make
    for site in opened:
        site.close()




def rooms_of(inspector: Inspector, user_id: str) -> tuple[list[str], list[str]]:
    """(rooms the account is joined to, managed rooms where it is still invited), from the admin API."""
    quoted = urllib.parse.quote(user_id)
    joined = inspector.get(f"/_synapse/admin/v1/users/{quoted}/joined_rooms")["joined_rooms"]
    invited = [lp for lp, rooms in inspector.rooms().items() for room in rooms
               if room.members.get(user_id) == "invite"]
    return sorted(joined), sorted(invited)


def devices_of(inspector: Inspector, user_id: str) -> list[str]:
    devices = inspector.get(f"/_synapse/admin/v2/users/{urllib.parse.quote(user_id)}/devices")["devices"]
    return sorted(str(d["device_id"]) for d in devices)


def deactivated(inspector: Inspector, user_id: str) -> bool | None:
    """The account's `deactivated` flag (None: no such account); never the whole answer in a message."""
    account = inspector.account(user_id)
    return None if account is None else bool(account["deactivated"])


def remove_b(site: Site, team: str) -> None:
    site.edit("team.yaml", WORKER_B.format(team=team), "")


def token_state(hs: Synapse, token: str | None) -> str:
    """"none", "valid" or "refused": what the tests assert on, so a failure never prints the token itself."""
    if not token:
        return "none"
    try:
        hs.call("GET", "/_matrix/client/v3/account/whoami", token=token)
    except SynapseError:
        return "refused"
    return "valid"


def no_secret_in(site: Site, caplog: pytest.LogCaptureFixture, *results: Any) -> None:
    values = [*site.secret_values(), ADMIN_PASSWORD]
    text = json.dumps([r.to_dict() for r in results]) + caplog.text
    shown = sum(1 for v in values if v in text)  # a count: a failure must not print the values it found
    assert shown == 0, "a credential shows in a plan, a run or a log line"


def test_removed_agent_stays_active_but_out_of_its_rooms(
    team_site: Callable[..., Site], inspector: Inspector, homeserver: Synapse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site, user = team_site("keep"), f"@keep-b:{homeserver.server_name}"
    first = site.reconcile()
    joined, _ = rooms_of(inspector, user)
    assert len(joined) == 2, f"keep-b should be in its worker room and the Team Room, is in {joined}"
    token = site.secrets.peek("matrix/keep-b/token")
    state = token_state(homeserver, token)
    assert state == "valid"

    remove_b(site, "keep")
    removal = site.reconcile()
    assert counts(removal)["delete"] == 2  # the account and the worker room
    assert deactivated(inspector, user) is False, "deactivated although the settings do not say so"
    assert rooms_of(inspector, user) == ([], []), "the removed agent is still in (or invited to) a room"
    assert devices_of(inspector, user) == [], "the removed agent still has a session"
    state = token_state(homeserver, token)
    assert state == "refused", "the removed agent's token still works"
    assert deactivated(inspector, f"@keep-a:{homeserver.server_name}") is False
    assert len(rooms_of(inspector, f"@keep-a:{homeserver.server_name}")[0]) == 2, "keep-a lost a room"
    again = site.reconcile()
    assert counts(again) == {}
    no_secret_in(site, caplog, first, removal, again)


def test_deactivate_removed_deactivates_and_a_return_reactivates(
    team_site: Callable[..., Site], inspector: Inspector, homeserver: Synapse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site, user = team_site("gone", deactivate_removed=True), f"@gone-b:{homeserver.server_name}"
    first = site.reconcile()
    before = rooms_of(inspector, user)[0]
    assert len(before) == 2

    remove_b(site, "gone")
    removal = site.reconcile()
    assert counts(removal)["delete"] == 2
    assert deactivated(inspector, user) is True, "deactivate_removed: the account is still active"
    assert rooms_of(inspector, user) == ([], [])
    token = site.secrets.peek("matrix/gone-b/token")
    state = token_state(homeserver, token)
    assert state == "refused"
    quiet = site.reconcile()
    assert counts(quiet) == {}, "a deactivated removed agent must not show as drift"

    # The agent comes back: the same account is reactivated (Synapse never frees a user ID) and rejoins.
    a_block = "    - name: gone-a\n      model: qwen3.6-plus\n"
    site.edit("team.yaml", a_block, a_block + WORKER_B.format(team="gone"))
    back = site.reconcile()
    assert deactivated(inspector, user) is False, "re-adding the agent did not reactivate it"
    assert len(rooms_of(inspector, user)[0]) == 2, "the returning agent is not back in its rooms"
    new = site.secrets.peek("matrix/gone-b/token")
    fresh, state = new != token, token_state(homeserver, new)
    assert (fresh, state) == (True, "valid"), "no new working token"
    assert counts(site.reconcile()) == {}
    no_secret_in(site, caplog, first, removal, quiet, back)



def test_deactivation_without_the_password_uses_the_admin_api(
    team_site: Callable[..., Site], inspector: Inspector, homeserver: Synapse
) -> None:
    """The homeserver asks for the account's password to deactivate it through the client API. Lost from the
    secret store, the actor (a server admin) deactivates it through the admin API — never leaves it active while
    recording it as deactivated."""
    site, user = team_site("nopw", deactivate_removed=True), f"@nopw-b:{homeserver.server_name}"
    site.reconcile()
    site.secrets.delete("matrix/nopw-b/password")
    remove_b(site, "nopw")
    assert counts(site.reconcile())["delete"] == 2
    assert deactivated(inspector, user) is True, "recorded as deactivated, still active"
    assert rooms_of(inspector, user) == ([], [])
    assert devices_of(inspector, user) == []
    assert counts(site.reconcile()) == {}



def test_removed_agent_without_credentials_still_loses_its_sessions(
    team_site: Callable[..., Site], inspector: Inspector, homeserver: Synapse
) -> None:
    """Token and password both lost from the secret store: the rooms still remove the agent, and the actor (a
    server admin) ends its sessions through the admin API — the token its container held no longer works."""
    site, user = team_site("lost"), f"@lost-b:{homeserver.server_name}"
    site.reconcile()
    token = site.secrets.peek("matrix/lost-b/token")
    state = token_state(homeserver, token)
    assert state == "valid"
    site.secrets.delete("matrix/lost-b/token")
    site.secrets.delete("matrix/lost-b/password")
    remove_b(site, "lost")
    assert counts(site.reconcile())["delete"] == 2
    assert deactivated(inspector, user) is False
    assert rooms_of(inspector, user) == ([], [])
    assert devices_of(inspector, user) == [], "the removed agent still has a session"
    state = token_state(homeserver, token)
    assert state == "refused"
    assert counts(site.reconcile()) == {}
