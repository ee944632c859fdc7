"""Suspend and resume, restarts, deleted messages and expiring approvals, on a real Synapse."""

from __future__ import annotations

import time
from pathlib import Path

from deploy.synapse import Synapse

from .harness import approval_ids, scene, wait_for, worker
from .test_approvals import TWO, agent_exists, passes, removal_refused


def test_suspend_stops_applying_while_status_goes_on_and_resume_applies(homeserver: Synapse,
                                                                        tmp_path: Path) -> None:
    org, admin, _, stack, first = scene(homeserver, tmp_path)
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        assert admin.reply_to(admin.send("!gitops suspend")).startswith("applying is suspended")
        assert "already suspended" in admin.reply_to(admin.send("!gitops suspend"))
        second = org.commit_and_push("w2", {"workers/w2.yaml": worker("w2")})
        summary = stack.wait_result(second, "Suspended")
        assert summary["message"].startswith("applying is suspended (by @admin:localhost in chat")
        assert summary["plan"]["counts"]["create"] > 0 and not agent_exists(homeserver, admin, "w2")
        assert "applying: suspended by @admin:localhost" in admin.reply_to(admin.send("!gitops status"))
        w1 = admin.reply_to(admin.send("!gitops status w1"))
        assert "Reconciled: False (Suspended)" in w1
        assert admin.reply_to(admin.send("!gitops sync")).startswith(f"sync: last run: Suspended for commit "
                                                                     f"{second[:12]}")
        assert not agent_exists(homeserver, admin, "w2")
        resumed = admin.reply_to(admin.send("!gitops resume"))
        assert resumed.startswith(f"applying resumed; last run: Reconciled for commit {second[:12]}")
        assert agent_exists(homeserver, admin, "w2")
        assert "not suspended" in admin.reply_to(admin.send("!gitops resume"))
    finally:
        stack.halt()


def test_a_restart_resumes_listening_without_running_old_commands_again(homeserver: Synapse,
                                                                        tmp_path: Path) -> None:
    org, admin, _, stack, first = scene(homeserver, tmp_path)
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        synced = admin.send("!gitops sync")
        admin.reply_to(synced)
        suspend = admin.send("!gitops suspend")
        admin.reply_to(suspend)
        wait_for(lambda: len(stack.commands()) == 2, 30, "two command records")
        stack.halt()
        while_down = admin.send("!gitops status")  # sent while nobody listens: carried out after the restart
        stack.start()
        assert "applying: suspended" in admin.reply_to(while_down)  # the suspension outlived the restart
        second = org.commit_and_push("w2", {"workers/w2.yaml": worker("w2")})
        stack.wait_result(second, "Suspended")
        admin.reply_to(admin.send("!gitops resume"))
        stack.wait_result(second, "Reconciled")
        time.sleep(1.5)  # a few more long polls: nothing old comes back
        assert len(admin.replies_to(synced)) == 1 and len(admin.replies_to(suspend)) == 1
        assert len(admin.replies_to(while_down)) == 1
        events = [r["eventId"] for r in stack.commands()]
        assert len(events) == len(set(events)) == 4
    finally:
        stack.halt()


def test_deleted_and_edited_commands_and_an_expired_approval(homeserver: Synapse, tmp_path: Path) -> None:
    org, admin, _, stack, first = scene(homeserver, tmp_path, "two workers", TWO, chat={"approval_ttl": 1.0})
    chat = stack.start(loop=False)  # the listener only: commands wait until the loop runs
    try:
        withdrawn = admin.send("!gitops sync")
        admin.redact(withdrawn)
        wait_for(lambda: len(chat.queue) == 2 and chat.queue[0].withdrawn, 30, "the command and its deletion")
        stack.run_loop()
        assert "was withdrawn (its message was deleted) before it ran" in admin.reply_to(withdrawn)
        assert len(admin.replies_to(withdrawn)) == 1
        stack.wait_result(first, "Reconciled")
        done = admin.send("!gitops status")
        admin.reply_to(done)
        admin.redact(done)
        wait_for(lambda: len(admin.replies_to(done)) == 2, 30, "the answer to the deletion")
        assert any("deleting it undoes nothing" in r for r in admin.replies_to(done))
        records = {r["eventId"]: r["outcome"] for r in stack.commands()}
        assert records[withdrawn] == "ignored" and records[done] == "ignored"

        _, ident = removal_refused(org, admin, stack)
        time.sleep(1.2)
        assert "it expired at" in admin.reply_to(admin.send(f"!gitops approve {ident}"))
        assert agent_exists(homeserver, admin, "w1")
        admin.reply_to(admin.send("!gitops sync"))  # the guard trips again: a new approval is asked for
        assert wait_for(lambda: [i for i in approval_ids(admin) if i != ident], 30, "a new approval request")
    finally:
        stack.halt()


def test_a_command_older_than_max_age_is_answered_not_carried_out(homeserver: Synapse, tmp_path: Path) -> None:
    _org, admin, _, stack, first = scene(homeserver, tmp_path, chat={"max_age": 3.0})
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        stack.halt()
        old = admin.send("!gitops suspend")
        time.sleep(3.5)
        chat = stack.start()
        assert "not carried out: this was sent" in admin.reply_to(old)
        assert not chat.suspended
        records = {r["eventId"]: r["outcome"] for r in stack.commands()}
        assert records[old] == "ignored"
    finally:
        stack.halt()


def test_an_approval_outlives_a_restart_and_is_not_asked_for_twice(homeserver: Synapse, tmp_path: Path) -> None:
    org, admin, _, stack, first = scene(homeserver, tmp_path, "two workers", TWO)
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        second, ident = removal_refused(org, admin, stack)
        stack.halt()
        stack.start()  # the refused commit is planned again at start: the same plan, the same approval
        wait_for(lambda: passes(org, "Refused", second) == 2, 60, "the pass after the restart")
        assert approval_ids(admin) == [ident]
        approved = admin.reply_to(admin.send(f"!gitops approve {ident}"))
        assert approved.startswith(f"approval {ident} by @admin:localhost: commit {second[:12]} applied once")
        assert not agent_exists(homeserver, admin, "w1")
    finally:
        stack.halt()
