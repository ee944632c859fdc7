"""Chat commands on a real Synapse: answered in the room, refused for others, bad input answered and harmless,
and every command recorded in status history (who, what, when, outcome)."""

from __future__ import annotations

import secrets
from pathlib import Path

from deploy.synapse import Synapse
from tests.git.gitutil import OrgRepo

from .harness import (
    ADMIN_PASSWORD,
    BOB_HUMAN,
    BOB_PASSWORD,
    Person,
    Stack,
    actor,
    admin_room,
    login,
    q,
    scene,
    wait_for,
    worker,
)


def test_commands_answered_refused_and_recorded(homeserver: Synapse, tmp_path: Path) -> None:
    files = {"workers/w1.yaml": worker("w1"), "humans/bob.yaml": BOB_HUMAN}
    org, admin, bob, stack, first = scene(homeserver, tmp_path, "w1", files, chat={"per_minute": 50})
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        assert "status [NAME]" in admin.reply_to(admin.send("!gitops help"))
        status = admin.reply_to(admin.send("!GITOPS Status"))
        assert f"last run: Reconciled for commit {first[:12]}" in status and "applying: active" in status
        assert admin.reply_to(admin.send("!gitops status w1")).startswith("Worker/w1: Ready")
        assert "no resource named `nobody`" in admin.reply_to(admin.send("!gitops status nobody"))
        assert "unknown command `frobnicate`" in admin.reply_to(admin.send("!gitops frobnicate"))
        assert "takes one argument" in admin.reply_to(admin.send("!gitops approve"))
        assert "takes no argument" in admin.reply_to(admin.send("!gitops sync now please"))
        assert "not an approval ID" in admin.reply_to(admin.send("!gitops approve 12"))
        assert "there is no approval ZZZZZZ" in admin.reply_to(admin.send("!gitops approve zzzzzz"))
        plan = admin.reply_to(admin.send("!gitops plan"))
        assert plan.startswith(f"plan of commit {first[:12]} (Reconciled): Plan: ") and "Worker/w1: created" in plan
        refused = bob.send("!gitops sync")
        assert "@bob:localhost may not command" in bob.reply_to(refused)
        chatter = admin.send("hello manager, how are the workers?")
        command = admin.send("!gitops status")
        edit = admin.edit(command, "!gitops sync")
        assert "edited message is never carried out" in admin.reply_to(edit)
        synced = admin.reply_to(admin.send("!gitops sync"))
        assert synced.startswith(f"sync: last run: Reconciled for commit {first[:12]}")
        # Nothing but commands is answered: not the conversation, not the reconciler's own notices.
        assert admin.replies_to(chatter) == []
        notices = admin.notices()
        assert all(to for to, _ in notices), "every notice is a reply to a command"
        assert len(bob.replies_to(refused)) == 1
        # Status history: who, what, when, outcome — one record per answered message.
        records = wait_for(lambda: len(stack.commands()) >= 14 and stack.commands(), 30, "command records")
        assert len(records) == 14  # the conversation is not a command
        by_event = {r["eventId"]: r for r in records}
        assert by_event[refused]["sender"] == "@bob:localhost" and by_event[refused]["outcome"] == "refused"
        assert by_event[edit]["outcome"] == "ignored"
        assert {r["outcome"] for r in records} >= {"done", "rejected", "refused", "ignored"}
        assert all(r["time"] and r["command"] for r in records)
        assert chatter not in by_event
        subjects = org.bare_git("log", "--format=%s", "hiclaw-status").splitlines()
        assert any(s.startswith("chatops: @bob:localhost `sync` → refused") for s in subjects)
        # No secret anywhere a person reads.
        texts = [b for _, b in notices] + [str(records)] + subjects
        secret_files = [homeserver.actor_password_file, homeserver.actor_token_file]
        values = [ADMIN_PASSWORD, BOB_PASSWORD, *(p.read_text().strip() for p in secret_files)]
        assert sum(v in t for v in values for t in texts) == 0
    finally:
        stack.halt()


def test_a_flood_is_answered_once_and_carried_out_never(homeserver: Synapse, tmp_path: Path) -> None:
    _org, admin, bob, stack, first = scene(homeserver, tmp_path, chat={"per_minute": 3})
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        sent = [admin.send("!gitops sync") for _ in range(8)]
        for event_id in sent[:3]:
            assert admin.reply_to(event_id).startswith("sync: ")
        assert "too many commands" in admin.reply_to(sent[3])
        records = wait_for(lambda: len(stack.commands()) >= 8 and stack.commands(), 30, "command records")
        assert [r["outcome"] for r in records] == ["done"] * 3 + ["refused"] * 5
        assert sum(len(admin.replies_to(e)) for e in sent[4:]) == 0
        # Someone who may not command cannot make the reconciler flood the room with refusals either.
        refused = [bob.send("!gitops sync") for _ in range(6)]
        assert "too many commands" in bob.reply_to(refused[3])
        assert all("may not command" in bob.reply_to(e) for e in refused[:3])
        wait_for(lambda: len(stack.commands()) >= 14, 30, "the refusals' records")
        assert sum(len(bob.replies_to(e)) for e in refused) == 4
    finally:
        stack.halt()


def test_level_one_humans_may_command_when_enabled(homeserver: Synapse, tmp_path: Path) -> None:
    org = OrgRepo(tmp_path / "remote")
    admin, bob = admin_room(homeserver)
    password = "carol-" + secrets.token_hex(12)
    homeserver.register("carol", password, admin=False)
    carol = Person(homeserver, "@carol:localhost", login(homeserver, "carol", password), admin.room_id)
    actor(homeserver).call("POST", f"/_matrix/client/v3/rooms/{q(admin.room_id)}/invite",
                           {"user_id": carol.user_id})
    carol.call("POST", f"/_matrix/client/v3/join/{q(admin.room_id)}", {})
    carol_human = BOB_HUMAN.replace("bob", "carol").replace("Bob", "Carol").replace("permissionLevel: 2",
                                                                                   "permissionLevel: 1")
    stack = Stack(homeserver, org, tmp_path, admin.room_id, {"level1_humans": True})
    first = org.commit_and_push("humans", {"workers/w1.yaml": worker("w1"), "humans/bob.yaml": BOB_HUMAN,
                                           "humans/carol.yaml": carol_human})
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        assert carol.reply_to(carol.send("!gitops status")).startswith("last run: Reconciled")
        stack.halt()
        stack.start()  # no new commit after the restart: the level-1 Humans are read from the last good one
        assert carol.reply_to(carol.send("!gitops help")).startswith("hiclaw-gitops commands")
        assert "may not command" in bob.reply_to(bob.send("!gitops status"))
        assert sum("password" in b.lower() or password in b for _, b in carol.notices()) == 0
    finally:
        stack.halt()
