"""Approving a plan the prune guard stopped (SPEC §5.4) in chat, on a real Synapse: applied exactly once when
the Global Admin approves it, refused for a level-2 human, void after a newer commit or a change of live state."""

from __future__ import annotations

from pathlib import Path

from deploy.synapse import Synapse
from tests.git.gitutil import OrgRepo

from .harness import BOB_HUMAN, Person, Stack, actor, approval_ids, q, scene, wait_for, worker

TWO = {"workers/w1.yaml": worker("w1"), "workers/w2.yaml": worker("w2"), "humans/bob.yaml": BOB_HUMAN}
NONE = {"workers/w1.yaml": None, "workers/w2.yaml": None}


def passes(org: OrgRepo, result: str, commit: str) -> int:
    """Status commits recording a pass (not a chat command) with this result for this commit."""
    subjects = org.bare_git("log", "--format=%s", "hiclaw-status").splitlines()
    return sum(s.startswith(f"status: {result} {commit[:12]}") for s in subjects)


def removal_refused(org: OrgRepo, admin: Person, stack: Stack, what: str = "the approval request"
                    ) -> tuple[str, str]:
    """Push a commit deleting both workers; the prune guard refuses it and asks: (that commit, the approval ID)."""
    commit = org.commit_and_push("remove both", NONE)
    stack.wait_result(commit, "Refused")
    return commit, wait_for(lambda: approval_ids(admin), 60, what)[0]


def agent_exists(hs: Synapse, person: Person, name: str) -> bool:
    """Whether the agent's room is still open (a deleted agent's room is closed and its alias released)."""
    try:
        person.call("GET", f"/_matrix/client/v3/directory/room/{q(f'#hiclaw-worker-{name}:localhost')}")
    except AssertionError:
        return False
    return True


def test_a_guarded_deletion_approved_once_and_refused_for_a_level_two_human(homeserver: Synapse,
                                                                             tmp_path: Path) -> None:
    org, admin, bob, stack, first = scene(homeserver, tmp_path, "two workers", TWO)
    chat = stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        second, ident = removal_refused(org, admin, stack)
        request = next(b for _, b in admin.notices() if ident in b)
        assert request.splitlines()[0] == f"🛑 hiclaw-gitops: the prune guard stopped commit {second[:12]}"
        assert "Agents deleted: Worker/w1, Worker/w2" in request
        assert "matrix/user/w1" in request and "matrix/room/hiclaw-worker-w2" in request
        assert "Plan: 0 to create" in request

        refused = bob.send(f"!gitops approve {ident}")
        assert "@bob:localhost may not command" in bob.reply_to(refused)
        assert chat.approval(ident) is not None and chat.approval(ident).status == "pending"  # type: ignore[union-attr]
        assert stack.summary()["result"] == "Refused" and agent_exists(homeserver, admin, "w1")

        # The admin answers the request with a Matrix reply (quoting it, as clients do), leaving the ID out.
        approved = admin.reply_to(admin.answer(admin.notice_id(f"Approval ID: {ident}"), request, "!gitops approve"))
        assert approved.startswith(f"approval {ident} by @admin:localhost: commit {second[:12]} applied once")
        assert stack.summary()["result"] == "Reconciled" and stack.summary()["commit"] == second
        assert not agent_exists(homeserver, admin, "w1") and not agent_exists(homeserver, admin, "w2")

        again = admin.reply_to(admin.send(f"!gitops approve {ident.lower()}"))
        assert again.startswith(f"approval {ident} cannot be used: it was already used by @admin:localhost")
        assert "cannot be used" in admin.reply_to(admin.send(f"!gitops reject {ident}"))
        admin.reply_to(admin.send("!gitops sync"))  # a pass more: nothing left to apply, nothing twice
        assert passes(org, "Reconciled", second) == 2 and passes(org, "Refused", second) == 1
        records = {r["eventId"]: r for r in stack.commands()}
        assert records[refused]["outcome"] == "refused"
    finally:
        stack.halt()


def test_a_newer_commit_or_a_change_of_live_state_voids_an_approval(homeserver: Synapse, tmp_path: Path) -> None:
    org, admin, _, stack, first = scene(homeserver, tmp_path, "two workers", TWO)
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        _, old = removal_refused(org, admin, stack, "the first approval request")
        bob2 = BOB_HUMAN.replace("displayName: Bob", "displayName: Bobby")
        third = org.commit_and_push("remove both, rename bob", {"humans/bob.yaml": bob2})
        stack.wait_result(third, "Refused")
        new = wait_for(lambda: [i for i in approval_ids(admin) if i != old], 60, "the second approval request")[0]
        assert any(b.startswith(f"approval {old} is void: a newer commit {third[:12]}") for _, b in admin.notices())
        void = admin.reply_to(admin.send(f"!gitops approve {old}"))
        assert void.startswith(f"approval {old} cannot be used: it is void: a newer commit")
        assert agent_exists(homeserver, admin, "w1")

        # The live state moves (a person renames an agent's room): the approval no longer describes it.
        bot = actor(homeserver)
        room = bot.call("GET", f"/_matrix/client/v3/directory/room/{q('#hiclaw-worker-w1:localhost')}")["room_id"]
        bot.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.name/", {"name": "renamed"})
        moved = admin.reply_to(admin.send(f"!gitops approve {new}"))
        assert moved.startswith(f"approval {new} was not applied: it is void: the live state changed")
        assert agent_exists(homeserver, admin, "w1") and stack.summary()["result"] == "Refused"
        latest = wait_for(lambda: [i for i in approval_ids(admin) if i not in (old, new)], 60, "a new request")[0]
        rejected = admin.reply_to(admin.send(f"!gitops reject {latest}"))
        assert rejected.startswith(f"approval {latest} rejected: commit {third[:12]} stays unapplied")
        assert "rejected by @admin:localhost" in admin.reply_to(admin.send(f"!gitops approve {latest}"))
        assert agent_exists(homeserver, admin, "w1") and passes(org, "Reconciled", third) == 0
    finally:
        stack.halt()
