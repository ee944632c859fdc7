"""ChatOps with several replicas: only the leader whose state is restored reads the room and answers; a new
leader takes the restored position and handled events, so nothing the previous leader carried out runs again.

The room here is a scripted stand-in (no homeserver is needed for who may listen); what the listener does with
real rooms is tested on Synapse beside this file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gitops.daemon.chatops import ChatOps
from gitops.daemon.chatops_matrix import Batch
from gitops.daemon.chatops_state import ChatState
from gitops.settings.model import MatrixSettings, Settings

ADMIN = "@admin:hs.test"


@dataclass
class Room:
    """Answers sync with the scripted events once, then nothing; records syncs and replies."""

    actor: str = "@hiclaw-gitops:hs.test"
    script: list[dict[str, Any]] = field(default_factory=list)
    syncs: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    during: Any = None  # called inside a sync (with its since), as if the long poll were still out

    def resolve(self) -> str:
        return "!admin:hs.test"

    def sync(self, since: str, timeout: float) -> Batch:
        self.syncs.append(since)
        time.sleep(0.01)
        if self.during is not None:
            self.during(since)
        events, self.script = (self.script, []) if since else ([], self.script)
        return Batch(f"s{len(self.syncs)}", tuple(events), False)

    def reply(self, text: str, to: str = "", key: str = "") -> str:
        self.replies.append(text)
        return f"$reply{len(self.replies)}"

    def close(self) -> None:
        pass


def message(ident: str, body: str) -> dict[str, Any]:
    return {"event_id": ident, "sender": ADMIN, "type": "m.room.message", "origin_server_ts": time.time() * 1000,
            "content": {"msgtype": "m.text", "body": body}}


def chat(tmp_path: Path, room: Room, gate: Any) -> tuple[ChatOps, threading.Event, threading.Event]:
    settings = Settings(state_dir=str(tmp_path), matrix=MatrixSettings(url="http://127.0.0.1:9", admin_user="admin",
                                                                       server_name="hs.test"))
    reconciler = SimpleNamespace(pass_fn=lambda *a, **k: None, state=SimpleNamespace(last_good_commit=""),
                                 store=None)
    stop, wake = threading.Event(), threading.Event()
    ops = ChatOps(settings, reconciler, SimpleNamespace(), wake=wake, stop=stop, client=room)  # type: ignore[arg-type]
    ops.gate = gate
    return ops, stop, wake


def wait_for(check: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_a_standby_neither_reads_the_room_nor_answers(tmp_path: Path) -> None:
    leading = threading.Event()
    room = Room(script=[message("$1", "!gitops status")])
    ops, stop, wake = chat(tmp_path, room, leading.is_set)
    ops.start()
    try:
        time.sleep(1.5)
        assert room.syncs == [] and not wake.is_set()
        assert ops.say("hello") == "" and room.replies == []  # nothing is said by a replica that does not lead
        leading.set()  # it leads now, its state is restored
        assert wait_for(lambda: len(room.syncs) >= 2 and wake.is_set())
        assert [w.text for w in ops.queue] == ["status"]
        assert ops.say("hello") == "$reply1"
    finally:
        stop.set()
        ops.close()


def test_events_read_while_the_lease_was_lost_are_left_to_the_next_leader(tmp_path: Path) -> None:
    gate = {"open": True}
    room = Room()
    ops, stop, wake = chat(tmp_path, room, lambda: gate["open"])

    def lose_the_lease(since: str) -> None:
        if since:  # the first sync only finds "now"; during the second the lease goes, events arrive
            room.script, room.during = [message("$late", "!gitops sync")], None
            gate["open"] = False

    room.during = lose_the_lease
    ops.start()
    try:
        assert wait_for(lambda: len(room.syncs) == 2 and not room.script)
        time.sleep(0.3)
        assert len(room.syncs) == 2  # a standby now: no more syncs
        assert ops.state.since == "s1" and "$late" not in ops.state.handled and not ops.queue and not wake.is_set()
        assert ChatState.load(tmp_path / "chatops.json").since == "s1"  # the next leader reads from before them
    finally:
        stop.set()
        ops.close()


def test_a_new_leader_takes_the_restored_position_and_never_runs_a_handled_command_again(tmp_path: Path) -> None:
    room = Room()
    ops, stop, _ = chat(tmp_path, room, lambda: True)
    ops.queue.append(ops.classify(message("$stale", "!gitops sync")))  # type: ignore[arg-type]
    restored = ChatState(since="s41", room_id="!admin:hs.test", handled=["$done"], suspended={"by": ADMIN, "at": "t"})
    restored.save(tmp_path / "chatops.json")  # what the previous leader published and this replica restored
    ops.reload()
    assert (ops.state.since, ops.state.handled, ops.suspended) == ("s41", ["$done"], True)
    assert not ops.queue  # work taken in an earlier term is not carried out by this one
    ops.receive([message("$done", "!gitops resume"), message("$new", "!gitops status")], False)
    assert [w.event_id for w in ops.queue] == ["$new"]
    stop.set()


def test_a_position_that_moved_with_no_event_is_not_written_at_every_long_poll(tmp_path: Path) -> None:
    """Each write of chatops.json makes the next state snapshot differ: only events (or time) write it."""
    room = Room()
    ops, _, _ = chat(tmp_path, room, None)
    ops.start()
    try:
        assert wait_for(lambda: len(room.syncs) >= 5)
        assert ChatState.load(tmp_path / "chatops.json").since == "s1"  # the first position, then no write
        room.script = [message("$2", "!gitops status")]
        assert wait_for(lambda: "$2" in ChatState.load(tmp_path / "chatops.json").handled)
    finally:
        ops.close()
    assert ChatState.load(tmp_path / "chatops.json").since == ops.state.since  # and the latest when it stops
