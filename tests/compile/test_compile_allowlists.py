"""Agent allow-lists (SPEC §3.3): defaults per agent kind, permission levels, peerMentions and channelPolicy."""

from __future__ import annotations

from .orgs import ACME, allowed, compiled, human, manager, member, openclaw, team, worker

STATE = compiled(*ACME)


def test_manager_answers_admin_standalone_workers_leaders_and_level_1_humans() -> None:
    everyone = {"admin", "alice", "bob", "lead", "dlead", "olivia"}
    assert allowed(STATE, "manager") == (everyone, everyone)


def test_standalone_worker_answers_manager_admin_and_humans_with_access_to_it() -> None:
    assert allowed(STATE, "alice") == ({"manager", "admin", "olivia", "chen", "lena"},) * 2
    assert allowed(STATE, "bob") == ({"manager", "admin", "olivia"},) * 2


def test_leader_answers_manager_admins_human_members_and_team_humans_and_hears_its_workers_in_groups() -> None:
    answers = {"manager", "admin", "priya", "sam", "olivia"}
    assert allowed(STATE, "lead") == (answers | {"dev", "qa"}, answers)


def test_leader_without_team_admin_answers_the_global_admin() -> None:
    answers = {"manager", "admin", "olivia", "chen"}
    assert allowed(STATE, "dlead") == (answers | {"etl", "bi"}, answers)


def test_team_worker_answers_leader_team_admin_human_members_and_team_humans_and_hears_peers_in_groups() -> None:
    answers = {"lead", "priya", "sam", "olivia"}  # the Team Admin replaces the Global Admin
    assert allowed(STATE, "dev") == (answers | {"qa"}, answers)


def test_team_worker_without_team_admin_answers_the_global_admin() -> None:
    answers = {"dlead", "admin", "olivia", "chen"}
    assert allowed(STATE, "etl") == (answers | {"bi"}, answers)


def test_peer_mentions_false_drops_peers() -> None:
    state = compiled(team("data", leader="dlead", workers=("etl", "bi"), peerMentions=False))
    assert allowed(state, "etl") == ({"dlead", "admin"}, {"dlead", "admin"})
    assert allowed(state, "dlead")[0] == {"admin", "etl", "bi"}  # the leader still hears its workers


def test_peer_mentions_default_true() -> None:
    state = compiled(team("data", leader="dlead", workers=("etl", "bi")))
    assert "bi" in allowed(state, "etl")[0]


def test_level_3_human_reaches_only_its_workers() -> None:
    lists = {rt: allowed(STATE, rt) for rt in ("manager", "alice", "bob", "lead", "dev", "dlead", "etl")}
    assert {rt for rt, (group, dm) in lists.items() if "lena" in group | dm} == {"alice"}


def test_level_2_human_reaches_its_teams_and_workers_but_not_the_manager() -> None:
    lists = {rt: allowed(STATE, rt) for rt in ("manager", "alice", "bob", "lead", "dev", "dlead", "etl", "bi")}
    assert {rt for rt, (group, dm) in lists.items() if "chen" in group and "chen" in dm} == {
        "alice",
        "dlead",
        "etl",
        "bi",
    }
    assert not any("chen" in group | dm for rt, (group, dm) in lists.items() if rt in ("manager", "bob", "lead", "dev"))


def test_level_1_human_reaches_every_agent() -> None:
    for rt in ("manager", "alice", "bob", "lead", "dev", "qa", "dlead", "etl", "bi"):
        group, dm = allowed(STATE, rt)
        assert "olivia" in group and "olivia" in dm, rt


def test_without_a_manager_no_list_names_it() -> None:
    state = compiled(worker("alice"), team("data", leader="dlead", workers=("etl",)))
    assert allowed(state, "alice") == ({"admin"}, {"admin"})
    assert allowed(state, "dlead") == ({"admin", "etl"}, {"admin"})


def test_channel_policy_adds_extras_per_channel() -> None:
    state = compiled(worker("alice", channelPolicy={"groupAllowExtra": ["bob"], "dmAllowExtra": ["carol"]}))
    assert allowed(state, "alice") == ({"admin", "bob"}, {"admin", "carol"})


def test_channel_policy_bare_names_get_the_domain_and_at_entries_are_verbatim() -> None:
    policy = {"groupAllowExtra": ["bob", "@eve:partner.example.org"]}
    state = compiled(worker("alice", channelPolicy=policy))
    group, _ = allowed(state, "alice")
    assert group == {"admin", "bob", "@eve:partner.example.org"}


def test_channel_policy_deny_removes_default_entries() -> None:
    state = compiled(
        manager(), worker("alice", channelPolicy={"dmDenyExtra": ["manager"], "groupDenyExtra": ["admin"]})
    )
    assert allowed(state, "alice") == ({"manager"}, {"admin"})


def test_deny_wins_over_allow_in_the_same_policy() -> None:
    state = compiled(worker("alice", channelPolicy={"groupAllowExtra": ["bob"], "groupDenyExtra": ["bob"]}))
    assert allowed(state, "alice")[0] == {"admin"}


def test_team_policy_applies_to_leader_and_workers_then_members_own_policy() -> None:
    state = compiled(
        team(
            "data",
            leader=member("dlead", channelPolicy={"groupAllowExtra": ["carol"]}),
            workers=(member("etl", channelPolicy={"dmAllowExtra": ["dave"]}), "bi"),
            channelPolicy={"groupAllowExtra": ["bob"]},
        )
    )
    assert allowed(state, "dlead")[0] == {"admin", "etl", "bi", "bob", "carol"}
    assert allowed(state, "etl") == ({"dlead", "admin", "bi", "bob"}, {"dlead", "admin", "dave"})
    assert allowed(state, "bi")[0] == {"dlead", "admin", "etl", "bob"}


def test_team_deny_wins_over_a_members_own_allow() -> None:
    state = compiled(
        team(
            "data",
            leader="dlead",
            workers=(member("etl", channelPolicy={"groupAllowExtra": ["bob"]}),),
            channelPolicy={"groupDenyExtra": ["bob"]},
        )
    )
    assert "bob" not in allowed(state, "etl")[0]


def test_members_own_deny_removes_a_team_allow() -> None:
    state = compiled(
        team(
            "data",
            leader="dlead",
            workers=(member("etl", channelPolicy={"dmDenyExtra": ["chen"]}), "bi"),
            channelPolicy={"dmAllowExtra": ["chen"]},
        )
    )
    assert "chen" not in allowed(state, "etl")[1]
    assert "chen" in allowed(state, "bi")[1]


def test_dm_deny_keeps_group_access() -> None:
    state = compiled(
        team("data", leader="dlead", workers=("etl",), channelPolicy={"dmDenyExtra": ["chen"]}),
        human("chen", 2, accessibleTeams=["data"]),
    )
    group, dm = allowed(state, "etl")
    assert "chen" in group and "chen" not in dm


def test_lists_are_sorted_and_unique() -> None:
    state = compiled(
        worker("alice", channelPolicy={"groupAllowExtra": ["zed", "admin", "@admin:matrix-local.hiclaw.io:8080"]})
    )
    group = openclaw(state, "alice")["channels"]["matrix"]["groupAllowFrom"]
    assert group == sorted(set(group)) and len(group) == 2
