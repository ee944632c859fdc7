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


def test_diff_reports_gained_and_lost_access() -> None:
    before = compiled(team("web", workers=("dev", "qa"))).access
    after = compiled(team("web", workers=("dev", "qa"), peerMentions=False), human("olivia", 1)).access
    gained, lost = diff(before, after)
    assert access("dev", "qa", "hiclaw-team-web") in lost and access("qa", "dev", "hiclaw-team-web") in lost
    assert access("olivia", "lead", DM) in gained
    assert set(gained) == set(after) - set(before) and set(lost) == set(before) - set(after)


def test_diff_against_nothing_gains_everything() -> None:
    gained, lost = diff(None, REPORT)
    assert (gained, lost) == (REPORT.entries, ())


def test_build_from_observed_rooms_and_lists() -> None:
    report = AccessReport.build("@bot:x", {"#r:x": ["@a:x", "@h:x"]}, {"@a:x": ([], ["@h:x"])})
    assert list(report) == [Access("@a:x", "@h:x", "#r:x"), Access("@h:x", "@a:x", "dm")]
