"""On a real Synapse: a command sent while a pass runs is acknowledged at once as queued and answered when the
pass ends; the state guard (many enforce-state agents stopped) asks the room and an approval applies it once."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from deploy.synapse import Synapse

from .harness import QUEUED, approval_ids, scene, wait_for, worker


def sleeping_worker(name: str) -> str:
    """A worker declared asleep, its state enforced."""
    return worker(name).replace("spec:\n", "  annotations:\n    gitops.hiclaw.io/enforce-state: \"true\"\nspec:\n"
                                "  state: Sleeping\n")


def test_a_command_sent_while_a_pass_runs_is_acknowledged_at_once_then_answered(homeserver: Synapse,
                                                                                tmp_path: Path) -> None:
    _org, admin, _, stack, first = scene(homeserver, tmp_path)
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        entered, release = stack.hold_passes()
        sync = admin.send("!gitops sync")
        wait_for(entered.is_set, 30, "the sync's pass to start")
        sent = time.monotonic()
        status = admin.send("!gitops status")
        ack = wait_for(lambda: admin.replies_to(status), 20, "the queued acknowledgement")
        assert time.monotonic() - sent < 20 and not release.is_set()  # while the pass is still running
        assert len(ack) == 1 and ack[0].startswith(f"{QUEUED}a pass of commit {first[:12]} is running")
        assert ack[0].endswith("`status` runs when it ends, and its answer follows")
        assert admin.replies_to(sync) == []  # sent before the pass started: nothing to acknowledge

        release.set()
        synced = admin.reply_to(sync)
        answer = admin.reply_to(status)
        assert synced.startswith(f"sync: last run: Reconciled for commit {first[:12]}")
        assert answer.startswith(f"last run: Reconciled for commit {first[:12]}")
        bodies = [b for _, b in admin.notices()]
        assert bodies.index(ack[0]) < bodies.index(synced) < bodies.index(answer)
        records = wait_for(lambda: {r["eventId"]: r for r in stack.commands() if r["eventId"] == status}, 30,
                           "the status command's record")
        assert records[status]["outcome"] == "done" and not records[status]["reply"].startswith(QUEUED)
    finally:
        stack.halt()


def test_the_state_guard_asks_in_the_room_and_an_approval_puts_woken_agents_back_to_sleep_once(
        homeserver: Synapse, tmp_path: Path) -> None:
    asleep = {f"workers/{n}.yaml": sleeping_worker(n) for n in ("s1", "s2")}
    _org, admin, _, stack, first = scene(homeserver, tmp_path, "two sleeping workers", asleep, runtime=True)
    stack.start()
    try:
        stack.wait_result(first, "Reconciled")
        runtime = stack.runtime_backend()

        def states() -> dict[str, str]:
            return {k.rsplit("-", 1)[-1]: str(s.spec["state"]) for k, s in runtime.ours().items()}

        assert states() == {"s1": "Sleeping", "s2": "Sleeping"}
        for key, stored in runtime.ours().items():  # someone wakes both agents
            runtime.objects[key] = dataclasses.replace(stored, spec={**stored.spec, "state": "Running"})

        synced = admin.reply_to(admin.send("!gitops sync"))
        assert synced.startswith(f"sync: last run: Refused for commit {first[:12]}")
        ident = wait_for(lambda: approval_ids(admin), 60, "the approval request")[0]
        request = next(b for _, b in admin.notices() if f"Approval ID: {ident}" in b).splitlines()
        assert request[0] == f"🛑 hiclaw-gitops: the state guard stopped commit {first[:12]}"
        assert request[1] == "Why: 2 running agents with enforce-state would be stopped or put to sleep (limit 1)"
        assert "Agents stopped or put to sleep (enforce-state): Worker/s1, Worker/s2" in request
        assert not any(line.startswith("Agents deleted") for line in request)
        assert "Plan: 0 to create, 2 to update, 0 to delete." in request
        assert states() == {"s1": "Running", "s2": "Running"}  # refused: nothing applied

        approved = admin.reply_to(admin.send(f"!gitops approve {ident}"))
        assert approved.startswith(f"approval {ident} by @admin:localhost: commit {first[:12]} applied once")
        assert states() == {"s1": "Sleeping", "s2": "Sleeping"}
        again = admin.reply_to(admin.send(f"!gitops approve {ident}"))
        assert again.startswith(f"approval {ident} cannot be used: it was already used by @admin:localhost")
        assert stack.summary()["result"] == "Reconciled"
    finally:
        stack.halt()
