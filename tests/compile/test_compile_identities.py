"""Identities (SPEC §3.1): Matrix IDs, accounts, and names that survive a runtime switch."""

from __future__ import annotations

from dataclasses import replace

from gitops.objects import Provider
from gitops.settings.model import MatrixSettings

from .orgs import ALL, compiled, human, keys, manager, member, members, spec, team, uid, worker


def test_agent_accounts_use_runtime_names() -> None:
    state = compiled(worker("alice", workerName="alice-rt"), team("web", leader=member("lead", workerName="boss")))
    assert spec(state, "matrix/user/alice-rt") == {
        "user_id": uid("alice-rt"),
        "displayname": "alice-rt",
        "kind": "agent",
        "password": "secret://matrix/alice-rt/password",
    }
    assert keys(state, "matrix/user/") == {"alice-rt", "boss", "dev"}


def test_manager_account_is_always_manager() -> None:
    state = compiled(manager("ops"))
    assert spec(state, "matrix/user/manager")["user_id"] == uid("manager")


def test_human_account_uses_username_and_display_name() -> None:
    state = compiled(human("priya", 1, username="pnair", displayName="Priya Nair"))
    assert spec(state, "matrix/user/pnair") == {
        "user_id": uid("pnair"),
        "displayname": "Priya Nair",
        "kind": "human",
        "password": "secret://matrix/pnair/password",
    }


def test_human_with_matrix_user_id_annotation_has_no_account_but_is_used_everywhere() -> None:
    sso = "@priya:sso.example.org"
    state = compiled(
        team("web", admin={"name": "priya"}),
        human("priya", 2, {"matrix-user-id": sso}, accessibleTeams=["web"]),
    )
    assert keys(state, "matrix/user/") == {"lead", "dev"}
    assert members(state, "hiclaw-team-web") == {sso, "lead", "dev"}


def test_human_members_and_admin_are_the_humans_identity_whatever_matrix_user_id_says() -> None:
    # Validation rejects a matrixUserId that is not the Human's (R415, R421); the compiler never uses it.
    sso = "@sam.s:sso.example.org"
    state = compiled(
        team(
            "web",
            admin={"name": "pam", "matrixUserId": "@pam:evil.example.org"},
            humanMembers=[{"name": "sam", "matrixUserId": "@sam:evil.example.org"}],
        ),
        human("pam", 3, username="pbeesly"),
        human("sam", 3, {"matrix-user-id": sso}),
    )
    assert members(state, "hiclaw-team-web") == {"pbeesly", sso, "lead", "dev"}
    assert state.access is not None
    assert {uid("pbeesly"), sso} <= state.access.group[uid("lead")]
    assert not any("evil" in m for m in state.access.group[uid("lead")] | state.access.group[uid("dev")])


def test_the_admin_and_actor_accounts_are_never_registered() -> None:
    settings = replace(ALL, matrix=MatrixSettings(admin_user="root", actor_user="bot"))
    state = compiled(human("root", 1), human("bot", 1), human("olivia", 1), settings=settings)
    assert keys(state, "matrix/user/") == {"olivia"}


def test_domain_comes_from_settings() -> None:
    settings = replace(ALL, matrix=MatrixSettings(server_name="chat.acme.io"))
    state = compiled(worker("alice"), settings=settings)
    assert spec(state, "matrix/user/alice")["user_id"] == "@alice:chat.acme.io"
    assert spec(state, "matrix/room/hiclaw-worker-alice")["alias"] == "#hiclaw-worker-alice:chat.acme.io"


def test_runtime_switch_keeps_account_storage_and_consumer_and_changes_only_the_container() -> None:
    before = compiled(worker("alice", runtime="openclaw", soul="Helpful."))
    after = compiled(worker("alice", runtime="copaw", soul="Helpful."))
    changed = {k for k in before.objects.keys() | after.objects.keys() if before.objects.get(k) != after.objects.get(k)}
    assert changed == {"runtime/container/hiclaw-worker-alice"}
    old, new = (
        spec(before, "runtime/container/hiclaw-worker-alice"),
        spec(after, "runtime/container/hiclaw-worker-alice"),
    )
    assert (old["image"], new["image"]) == ("hiclaw/worker-agent:latest", "hiclaw/copaw-worker:latest")
    assert old["env"] == new["env"]  # same credentials, same names
    assert keys(before, "") == keys(after, "")
    assert {o.provider for k, o in after.objects.items() if k in changed} == {Provider.RUNTIME}
