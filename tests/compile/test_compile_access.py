"""The access report: who can address whom, where — derived from rooms and allow-lists."""

from __future__ import annotations

from gitops.compile.access import DM, Access, AccessReport, diff

from .orgs import BOT, D, compiled, human, manager, team, uid, worker


def access(sender: str, receiver: str, room: str) -> Access:
    return Access(
        uid(sender) if not sender.startswith("@") else sender, uid(receiver), room if room == DM else f"#{room}:{D}"
    )


STATE = compiled(
    manager(),
    worker("alice"),
    team("web", workers=("dev", "qa")),
    human("olivia", 1),
    human("lena", 3, accessibleWorkers=["alice"]),
)
REPORT = STATE.access


def test_room_members_on_an_agents_group_list_can_address_it() -> None:
    assert access("lena", "alice", "hiclaw-worker-alice") in REPORT
    assert access("manager", "alice", "hiclaw-worker-alice") in REPORT
    assert access("dev", "qa", "hiclaw-team-web") in REPORT  # peerMentions


def test_agents_hear_only_their_group_list_but_humans_hear_everyone_in_the_room() -> None:
    assert access("dev", "olivia", "hiclaw-team-web") in REPORT
    assert access("dev", "admin", "hiclaw-worker-dev") in REPORT
    lone = compiled(team("web", workers=("dev",), channelPolicy={"groupDenyExtra": ["admin"]})).access
    assert access("admin", "dev", "hiclaw-team-web") not in lone
    assert access("dev", "admin", "hiclaw-team-web") in lone


def test_no_access_without_a_shared_room() -> None:
    assert not REPORT.can(uid("lena"), uid("dev"), f"#hiclaw-team-web:{D}")
    assert not any(e.sender == uid("lena") and e.receiver == uid("dev") for e in REPORT)


def test_dm_entries_follow_dm_allow_lists() -> None:
    assert access("olivia", "alice", DM) in REPORT
    assert access("dev", "lead", DM) not in REPORT  # workers are heard by the leader in groups only
    partner = compiled(worker("alice", channelPolicy={"dmAllowExtra": ["@oncall:partner.org"]})).access
    assert access("@oncall:partner.org", "alice", DM) in partner


def test_the_actor_is_exempt_and_listed_apart() -> None:
    assert REPORT.actor == uid(BOT)
    assert not any(uid(BOT) in (e.sender, e.receiver) for e in REPORT)
    assert REPORT.to_dict()["actor"]["id"] == uid(BOT)


def test_entries_are_sorted_and_unique() -> None:
    assert list(REPORT) == sorted(set(REPORT))


def test_to_dict_groups_senders_by_channel_and_receiver() -> None:
    channels = REPORT.to_dict()["channels"]
    assert uid("lena") in channels[f"#hiclaw-worker-alice:{D}"][uid("alice")]
    assert channels[DM][uid("alice")] == sorted(channels[DM][uid("alice")])
    assert sum(len(s) for r in channels.values() for s in r.values()) == len(REPORT)


def test_diff_is_set_changes_per_room_and_per_agent() -> None:
    before = compiled(team("web", workers=("dev", "qa"))).access
    after = compiled(team("web", workers=("dev", "qa"), peerMentions=False), human("olivia", 1)).access
    change = diff(before, after)
    lists = {a.agent: a for a in change.agents}
    assert uid("qa") in lists[uid("dev")].group.removed and uid("dev") in lists[uid("qa")].group.removed
    assert uid("olivia") in lists[uid("lead")].dm.added
    rooms = {r.room: r for r in change.rooms}
    assert uid("olivia") in rooms[f"#hiclaw-team-web:{D}"].members.added
    assert f"#hiclaw-worker-dev:{D}" not in rooms  # a private team worker room: level 1 does not reach it
    olivia = next(p for p in change.principals if p.id == uid("olivia"))
    assert olivia.kind == "human" and olivia.rooms_gained.count == 2 and olivia.reaches_gained.count == 3


def test_diff_against_nothing_lists_every_set_once_and_shares_it() -> None:
    change = diff(None, REPORT)
    assert {r.room for r in change.rooms} == set(REPORT.rooms)
    for r in change.rooms:
        assert r.members.added is REPORT.rooms[r.room] and r.members.removed == frozenset()
    for a in change.agents:
        assert a.group.added is REPORT.group[a.agent]  # the compiled set itself, not a copy


def test_diff_of_equal_reports_is_empty() -> None:
    assert not diff(REPORT, REPORT) and diff(REPORT, REPORT).principals == ()


def test_power_and_private_rooms_are_part_of_the_report() -> None:
    assert REPORT.power[f"#hiclaw-team-web:{D}"] == frozenset({uid("admin"), uid("lead")})
    assert f"#hiclaw-worker-dev:{D}" in REPORT.private and f"#hiclaw-team-web:{D}" not in REPORT.private
    assert REPORT.kind(uid("dev")) == "agent" and REPORT.kind(uid("olivia")) == "human"
    assert REPORT.kind("@x:elsewhere.example") == "outside" and REPORT.kind(REPORT.actor) == "actor"


def test_build_from_observed_rooms_and_lists() -> None:
    report = AccessReport.build("@bot:x", {"#r:x": ["@a:x", "@h:x"]}, {"@a:x": ([], ["@h:x"])})
    assert list(report) == [Access("@a:x", "@h:x", "#r:x"), Access("@h:x", "@a:x", "dm")]
