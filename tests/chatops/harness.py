"""Test support: people talking in a real admin room on Synapse, and the daemon (poller, pass, ChatOps) running
in-process on a thread, as `hiclaw-gitops run` wires it. Messages are read back through the client API as the
Global Admin, never through the code under test."""

from __future__ import annotations

import re
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from deploy.synapse import Synapse, SynapseError
from gitops.daemon.chatops import ChatOps, attach
from gitops.daemon.loopstate import LoopState
from gitops.daemon.metrics import Metrics
from gitops.daemon.notify import EscalationTracker, LogNotifier
from gitops.daemon.passes import default_pass
from gitops.daemon.pollers import GitPoller
from gitops.daemon.reconciler import Reconciler
from gitops.daemon.runner import Daemon
from gitops.settings.load import REDACTOR
from gitops.settings.model import (
    ChatOpsSettings,
    MatrixSettings,
    PruneSettings,
    RuntimeSettings,
    Settings,
    SourceSettings,
)
from gitops.source.git import GitSource
from gitops.status.store import GitStatusStore
from tests.git.gitutil import OrgRepo
from tests.git.gitutil import wait_for as git_wait_for

ADMIN_PASSWORD = "adm-" + secrets.token_hex(12)  # generated per session: must never show in any output
BOB_PASSWORD = "bob-" + secrets.token_hex(12)


def worker(name: str) -> str:
    return f"apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: {name}\nspec:\n  model: qwen3.6-plus\n"


BOB_HUMAN = (
    "apiVersion: hiclaw.io/v1beta1\nkind: Human\nmetadata:\n  name: bob\n  annotations:\n"
    "    gitops.hiclaw.io/matrix-user-id: \"@bob:localhost\"\nspec:\n  displayName: Bob\n  permissionLevel: 2\n"
)


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """gitutil.wait_for with the homeserver's patience: a minute by default, a look every 0.1 s."""
    return git_wait_for(condition, timeout, what, interval=0.1)


@dataclass
class Person:
    """Someone with a Matrix client: sends, edits and deletes messages in the admin room."""

    hs: Synapse
    user_id: str
    token: str = field(repr=False)  # never in a test's output, a failing one's included
    room_id: str = ""

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One client-API request as this person; a refusal is an AssertionError naming the errcode only."""
        try:
            return self.hs.call(method, path, body, token=self.token)
        except SynapseError as exc:
            raise AssertionError(f"{method} {path.split('?')[0]} as {self.user_id} refused: "
                                 f"{REDACTOR.redact(str(exc))[-200:]}") from None

    def send(self, body: str) -> str:
        return self._put("m.room.message", {"msgtype": "m.text", "body": body})

    def edit(self, event_id: str, body: str) -> str:
        return self._put("m.room.message", {
            "msgtype": "m.text", "body": f"* {body}", "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}})

    def answer(self, event_id: str, quoted: str, body: str) -> str:
        """A Matrix reply to `event_id`, with the quote of it that many clients put first."""
        fallback = "\n".join(f"> {line}" for line in quoted.splitlines())
        return self._put("m.room.message", {"msgtype": "m.text", "body": f"{fallback}\n\n{body}",
                                            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}}})

    def notice_id(self, part: str) -> str:
        """The event ID of the reconciler's notice containing `part`."""
        path = f"/_matrix/client/v3/rooms/{q(self.room_id)}/messages?dir=b&limit=500"
        return next(str(e["event_id"]) for e in self.call("GET", path)["chunk"]
                    if e["type"] == "m.room.message" and part in str((e.get("content") or {}).get("body", "")))

    def redact(self, event_id: str) -> str:
        path = (f"/_matrix/client/v3/rooms/{q(self.room_id)}/redact/{q(event_id)}/{uuid.uuid4().hex}")
        return str(self.call("PUT", path, {})["event_id"])

    def _put(self, kind: str, content: dict[str, Any]) -> str:
        path = f"/_matrix/client/v3/rooms/{q(self.room_id)}/send/{kind}/{uuid.uuid4().hex}"
        return str(self.call("PUT", path, content)["event_id"])

    def notices(self) -> list[tuple[str, str]]:
        """The reconciler's notices in the room, oldest first: (the event replied to or '', body)."""
        path = f"/_matrix/client/v3/rooms/{q(self.room_id)}/messages?dir=b&limit=500"
        chunk = self.call("GET", path)["chunk"]
        out = []
        for e in reversed(chunk):
            content = e.get("content") or {}
            if e["type"] == "m.room.message" and content.get("msgtype") == "m.notice":
                to = ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get("event_id", "")
                out.append((str(to), str(content.get("body", ""))))
        return out

    def reply_to(self, event_id: str, timeout: float = 60.0) -> str:
        """The answer to a command (an acknowledgement that it is queued is not the answer)."""
        found = wait_for(lambda: [b for to, b in self.notices() if to == event_id and not b.startswith(QUEUED)],
                         timeout, f"a reply to {event_id}")
        return str(found[0])

    def replies_to(self, event_id: str) -> list[str]:
        return [b for to, b in self.notices() if to == event_id]


QUEUED = "queued: "


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def actor(hs: Synapse) -> Person:
    return Person(hs, hs.actor, hs.actor_token())


def login(hs: Synapse, user: str, password: str) -> str:
    answer = hs.call("POST", "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password,
        "device_id": "TEST_" + user.upper()})
    return str(answer["access_token"])


def admin_room(hs: Synapse) -> tuple[Person, Person]:
    """A new room made by the actor with the Global Admin and Bob (a level-2 human) joined."""
    hs.register("bob", BOB_PASSWORD, admin=False)
    admin = Person(hs, hs.admin_id, login(hs, hs.admin_user, ADMIN_PASSWORD))
    bob = Person(hs, "@bob:localhost", login(hs, "bob", BOB_PASSWORD))
    room = actor(hs).call("POST", "/_matrix/client/v3/createRoom", {
        "preset": "private_chat", "name": "hiclaw admin", "invite": [admin.user_id, bob.user_id]})["room_id"]
    for person in (admin, bob):
        person.room_id = str(room)
        person.call("POST", f"/_matrix/client/v3/join/{q(str(room))}", {})
    return admin, bob


@dataclass
class Stack:
    """The daemon in-process (on a thread, as `run` wires it) over a real repository and the real Synapse."""

    hs: Synapse
    org: OrgRepo
    root: Path
    room_id: str
    chat_settings: dict[str, Any] = field(default_factory=dict)
    runtime: bool = False  # agents' containers on the in-memory runtime backend, as well as Matrix
    chat: ChatOps | None = None
    thread: threading.Thread | None = None
    daemon: Daemon | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(
            source=SourceSettings(url=self.org.url, poll_interval=0.3, jitter=0.0),
            state_dir=str(self.root / "state"),
            matrix=MatrixSettings(**self.hs.settings()),
            prune=PruneSettings(max_agents=1),
            runtime=RuntimeSettings(backend="memory") if self.runtime else None,
            chatops=ChatOpsSettings(room=self.room_id, poll_timeout=1.0, **self.chat_settings),
        )

    def start(self, loop: bool = True) -> ChatOps:
        settings = self.settings
        state_dir = Path(settings.state_dir)
        self.stop = threading.Event()
        wake = threading.Event()
        source = GitSource(settings.source.url, settings.source.branch, state_dir / "git")
        store = GitStatusStore(source, settings.status)
        pass_fn = default_pass(settings, stop=self.stop)
        state = LoopState.load(state_dir / "loop.json")
        reconciler = Reconciler(settings, pass_fn, store=store, metrics=Metrics(),
                                tracker=EscalationTracker(LogNotifier(), 3), state=state,
                                state_path=state_dir / "loop.json", source_label=source.label)
        poller = GitPoller(source, reconciler, store)
        chat = attach(settings, reconciler, poller, wake=wake, stop=self.stop)
        assert chat is not None
        self.daemon = Daemon(partial(chat.poll, poller.poll), interval=0.3, jitter=0.0, stop=self.stop, wake=wake)
        self.thread = None
        if loop:
            self.run_loop()
        self.chat = chat
        self.closers = [chat.close, pass_fn.close]
        wait_for(lambda: chat.state.since, 30, "the listener's first sync")
        return chat

    def run_loop(self) -> None:
        """The daemon's loop (polls, and the commands between them) on a thread of its own."""
        assert self.daemon is not None
        self.thread = threading.Thread(target=self.daemon.run, name="test-daemon", daemon=True)
        self.thread.start()

    def hold_passes(self) -> tuple[threading.Event, threading.Event]:
        """From now on every pass waits, once started, until `release` is set — a long pass, held as long as
        the test needs. (entered: a pass is waiting; release)."""
        assert self.chat is not None
        inner = self.chat.reconciler.pass_fn.inner  # type: ignore[attr-defined]
        original = inner._reconcile
        entered, release = threading.Event(), threading.Event()

        def held(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            release.wait(120)
            return original(*args, **kwargs)

        inner._reconcile = held
        return entered, release

    def runtime_backend(self) -> Any:
        """The daemon's in-memory runtime backend (with `runtime=True`): where agents live."""
        from gitops.objects import Provider

        assert self.chat is not None
        return self.chat.reconciler.pass_fn.inner.backends[Provider.RUNTIME]  # type: ignore[attr-defined]

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=60)
            assert not self.thread.is_alive(), "the daemon did not stop"
        for close in self.closers:
            close()
        self.closers = []

    def summary(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.org.show("hiclaw-status", "status/summary.yaml"))
        except AssertionError:  # no status branch yet, or only chat commands recorded so far
            return {}
        return data if isinstance(data, dict) else {}

    def commands(self) -> list[dict[str, Any]]:
        try:
            data = yaml.safe_load(self.org.show("hiclaw-status", "status/commands.yaml"))
        except AssertionError:
            return []
        return list(data["commands"])

    def wait_result(self, commit: str, result: str, timeout: float = 90.0) -> dict[str, Any]:
        return dict(wait_for(lambda: (s := self.summary()).get("commit") == commit and s.get("result") == result
                             and s, timeout, f"{result} for {commit[:12]}"))


APPROVAL = re.compile(r"Approval ID: ([A-Z2-9]{6})")


def approval_ids(person: Person) -> list[str]:
    return [m.group(1) for _, body in person.notices() if (m := APPROVAL.search(body))]


def scene(hs: Synapse, tmp_path: Path, message: str = "w1", files: dict[str, str] | None = None,
          chat: dict[str, Any] | None = None, runtime: bool = False) -> tuple[OrgRepo, Person, Person, Stack, str]:
    """What most tests start from: an org repository with a first commit pushed (`files`, else Worker w1), the
    admin room with the admin and bob, and a daemon stack on both (not started): (org, admin, bob, stack, first)."""
    org = OrgRepo(tmp_path / "remote")
    admin, bob = admin_room(hs)
    stack = Stack(hs, org, tmp_path, admin.room_id, chat or {}, runtime=runtime)
    first = org.commit_and_push(message, files if files is not None else {"workers/w1.yaml": worker("w1")})
    return org, admin, bob, stack, first
