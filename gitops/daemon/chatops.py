"""ChatOps: the daemon takes commands in the admin's Matrix room and approves guarded plans (docs/chatops.md).

A listener thread long-polls the room as the actor (resuming from its saved `/sync` token) and turns each new
message into work: a command, or a reply for bad input (unknown command, wrong arguments, an edit, a sender who
may not command, a flood, a command older than `chatops.max_age`). It never acts: the daemon's own loop thread
carries out the work between polls (`ChatOps.poll` wraps the poller's), so a command never runs beside a pass;
one that arrives while a pass runs is acknowledged at once as queued. Each one is answered in the room and
recorded in the status tree (`status/commands.yaml`, one status commit per batch). Every event is handled at
most once (its ID is remembered before anything is done), so a replay or a restart never acts twice.

Guarded plans: the pass is wrapped (`GuardedPass`). When a guard stops a plan (the prune guard, or the state
guard of enforce-state agents), the room gets the agents it would delete or stop and an approval ID. `approve ID`
lets that plan — bound to its head commit and observed-state fingerprint — apply once (`pipeline.apply_saved`);
a newer commit or a moved fingerprint voids it. `suspend` turns passes into plans (status `Suspended`) until
`resume`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gitops.daemon.chatops_commands import BadCommand, Command, addressed, parse
from gitops.daemon.chatops_run import GuardedPass, execute
from gitops.daemon.chatops_state import Approval, ChatState
from gitops.daemon.logs import event
from gitops.daemon.pollers import PollOutcome
from gitops.daemon.reconciler import Reconciler
from gitops.settings.load import REDACTOR
from gitops.settings.model import Settings
from gitops.status.model import CommandRecord, now_iso
from gitops.status.store import COMMAND_SUBJECT

log = logging.getLogger("hiclaw_gitops.chatops")
HANDLED_KEPT = 2000  # event IDs remembered (replays are recent events)
STANDBY_WAIT = 1.0  # seconds between a standby listener's looks at its leadership
SAVE_EVERY = 300.0  # seconds between saves of a position that moved with no event
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(slots=True)
class Work:
    """One message to answer on the loop thread: a command to carry out, or a reply already decided."""

    event_id: str
    sender: str
    text: str
    command: Command | None = None
    reply: str = ""
    outcome: str = "done"
    withdrawn: bool = False


class ChatOps:
    """Listens in the admin room, carries out commands on the loop thread, keeps approvals (module docstring)."""

    def __init__(self, settings: Settings, reconciler: Reconciler, poller: Any, *, wake: threading.Event,
                 stop: threading.Event, client: Any = None, clock: Callable[[], float] = time.time) -> None:
        from gitops.daemon.notify import room_of

        self.settings = settings
        self.conf = settings.chatops
        self.reconciler = reconciler
        self.poller = poller
        self.wake = wake
        self.stop = stop
        self.clock = clock
        self.path = Path(settings.state_dir) / "chatops.json"
        self.state = ChatState.load(self.path)
        self.room = self.conf.room or room_of(settings)
        if client is None:
            from gitops.daemon.chatops_matrix import RoomClient

            client = RoomClient(settings, self.room)
        self.client = client
        self.lock = threading.RLock()
        self.queue: deque[Work] = deque()
        self.sent: dict[str, deque[float]] = {}  # sender -> times of their recent commands (flood limit)
        self.flood_told: dict[str, float] = {}
        self.carried_out: dict[str, str] = {}  # event ID -> command, the latest carried out (for deletions)
        self.level1: frozenset[str] = frozenset()
        self.grant: Approval | None = None
        self.last_drift: tuple[str, int | str] | None = None
        self.thread: threading.Thread | None = None
        self.replies = 0
        self.busy: tuple[str, str, float] | None = None  # (what, commit, monotonic start) while a pass runs
        # With several replicas: whether this one may listen and answer now (it leads, its state is restored).
        # A standby neither reads the room nor speaks; the leader's position and handled events follow a restore.
        self.gate: Callable[[], bool] | None = None
        self.saved_at = time.monotonic()
        reconciler.pass_fn = GuardedPass(reconciler.pass_fn, self)

    # Persistence ------------------------------------------------------------------------------------

    def save(self) -> None:
        with self.lock:
            self.saved_at = time.monotonic()
            self.state.handled = self.state.handled[-HANDLED_KEPT:]
            self.state.save(self.path)

    def approval(self, ident: str) -> Approval | None:
        data = self.state.approvals.get(ident)
        return Approval(**data) if data else None

    def put(self, a: Approval) -> None:
        with self.lock:
            if a.status not in ("pending", "applying"):
                a.plan = None  # a settled approval keeps its story, not its plan
            self.state.approvals[a.id] = asdict(a)
            week = self.clock() - 7 * 86400
            self.state.approvals = {k: v for k, v in self.state.approvals.items() if v["created"] > week}
            self.save()

    def reload(self) -> None:
        """The state directory was restored (a new leader): take the restored position, handled events,
        suspension and approvals; nothing queued by an earlier term is carried out."""
        with self.lock:
            self.state = ChatState.load(self.path)
            self.queue.clear()
            self.grant = None

    def active(self) -> bool:
        return self.gate is None or self.gate()

    @property
    def suspended(self) -> bool:
        return bool(self.state.suspended)

    # The listener (its own thread) --------------------------------------------------------------------

    def start(self) -> ChatOps:
        self.thread = threading.Thread(target=self.listen, name="hiclaw-chatops", daemon=True)
        self.thread.start()
        return self

    def listen(self) -> None:
        failures = 0
        while not self.stop.is_set():
            if not self.active():  # a standby: the leader listens
                self.stop.wait(STANDBY_WAIT)
                continue
            try:
                room_id = self.client.resolve()
                if room_id != self.state.room_id:  # another room: its old position means nothing here
                    self.state.room_id, self.state.since = room_id, ""
                batch = self.client.sync(self.state.since, self.conf.poll_timeout)
                if self.stop.is_set():
                    return
                if not self.active():  # lost the lease while waiting: the next leader reads these events
                    continue
                first = not self.state.since
                self.receive(batch.events, batch.limited, first=first)
                with self.lock:
                    self.state.since = batch.next_batch
                    # An empty batch moves only the position: written now and then, not at every long poll
                    # (it would make a new state snapshot each time; a restart re-reads a few minutes, and
                    # handled events are never acted on twice).
                    if first or batch.events or batch.limited or time.monotonic() - self.saved_at >= SAVE_EVERY:
                        self.save()
                failures = 0
            except Exception as exc:  # the homeserver is away: try again with backoff, never die
                failures += 1
                event(logging.WARNING, "chat commands: listening failed", error=REDACTOR.redact(str(exc)),
                      failures=failures)
                self.stop.wait(min(60.0, 2.0 ** min(failures, 6)))

    def receive(self, events: Any, limited: bool, first: bool = False) -> None:
        """Turn new events into work for the loop (the listener's thread)."""
        if first:
            return  # the first sync only says where "now" is: messages from before are never carried out
        added = False
        queued: list[Work] = []
        with self.lock:
            if limited:
                self.queue.append(Work("", "", "", reply="more messages arrived at once than I read; some were "
                                       "skipped — send a skipped command again", outcome="ignored"))
                added = True
            for e in events:
                ident = str(e.get("event_id") or "")
                if not ident or ident in self.state.handled:
                    continue  # a replay
                self.state.handled.append(ident)
                work = self.classify(e)
                if work is not None:
                    self.queue.append(work)
                    added = True
                    if work.command is not None:
                        queued.append(work)
            busy = self.busy
        if added:
            self.wake.set()
        if busy is not None:  # commands wait for the pass in flight: say so now, answer when carried out
            what, commit, since = busy
            for work in queued:
                self.say(f"queued: {what} of commit {commit[:12]} is running (for {int(time.monotonic() - since)} "
                         f"s); `{work.text}` runs when it ends, and its answer follows", work.event_id)

    @contextlib.contextmanager
    def running(self, commit: str, what: str = "a pass") -> Iterator[None]:
        """While a pass (or a drift check) runs: commands that arrive are acknowledged as queued at once."""
        with self.lock:
            self.busy = (what, commit, time.monotonic())
        try:
            yield
        finally:
            with self.lock:
                self.busy = None

    def classify(self, e: Mapping[str, Any]) -> Work | None:
        sender = str(e.get("sender") or "")
        content = e.get("content") if isinstance(e.get("content"), Mapping) else {}
        assert isinstance(content, Mapping)
        ident = str(e.get("event_id"))
        if sender == self.client.actor:
            return None  # never answer ourselves
        if e.get("type") == "m.room.redaction":
            return self.redaction(sender, str(content.get("redacts") or e.get("redacts") or ""))
        body = content.get("body")
        if content.get("msgtype") == "m.notice" or not isinstance(body, str):
            return None  # other bots' notices; a message redacted before we read it
        relation = content.get("m.relates_to") if isinstance(content.get("m.relates_to"), Mapping) else {}
        assert isinstance(relation, Mapping)
        replied = relation.get("m.in_reply_to") if isinstance(relation.get("m.in_reply_to"), Mapping) else {}
        assert isinstance(replied, Mapping)
        text = addressed(without_fallback(body) if replied else body, self.conf.prefix)
        asked = self.asked_in(str(replied.get("event_id") or ""))
        if text is not None and asked and text.lower() in ("approve", "reject"):
            text = f"{text} {asked}"  # a reply to the approval request names its ID
        if relation.get("rel_type") == "m.replace":
            new = content.get("m.new_content")
            new_body = new.get("body") if isinstance(new, Mapping) else None
            if text is None and (not isinstance(new_body, str) or addressed(new_body, self.conf.prefix) is None):
                return None
            return Work(ident, sender, "(edit)", reply="an edited message is never carried out (nor is the "
                        "command it replaced run again); send the command as a new message", outcome="ignored")
        if text is None:
            return None  # conversation, not for the reconciler
        shown = text[:80]
        age = self.clock() - float(e.get("origin_server_ts") or 0) / 1000
        if age > self.conf.max_age:
            return Work(ident, sender, shown, reply=f"not carried out: this was sent {int(age // 60)} min ago, "
                        "while I was not listening; send it again if it still applies", outcome="ignored")
        if self.flooding(sender):  # anyone's flood, so that refusals cannot flood the room either
            last = self.flood_told.get(sender, 0.0)
            if self.clock() - last < 60:
                return Work(ident, sender, shown, outcome="refused")  # recorded, answered once per minute
            self.flood_told[sender] = self.clock()
            return Work(ident, sender, shown, outcome="refused", reply=f"too many commands (more than "
                        f"{self.conf.per_minute} a minute): this one and the next ones this minute are ignored")
        if not self.may_command(sender):
            return Work(ident, sender, shown, reply=f"{sender} may not command hiclaw-gitops here; nothing was "
                        "done (chatops.allowed in the reconciler's settings lists who may)", outcome="refused")
        try:
            command = parse(text, self.conf.prefix)
        except BadCommand as exc:
            return Work(ident, sender, shown, reply=str(exc), outcome="rejected")
        return Work(ident, sender, command.text, command=command)

    def redaction(self, sender: str, target: str) -> Work | None:
        for work in self.queue:
            if work.event_id == target and work.command is not None and not work.withdrawn:
                work.withdrawn = True
                return Work(target, sender, f"(deleted) {work.text}", reply=f"`{work.text}` was withdrawn "
                            "(its message was deleted) before it ran: nothing was done", outcome="ignored")
        done = self.carried_out.get(target)
        if done is not None:
            return Work(target, sender, f"(deleted) {done}", reply=f"`{done}` had already been carried out when "
                        "its message was deleted; deleting it undoes nothing", outcome="ignored")
        return None

    def asked_in(self, event_id: str) -> str:
        """The approval ID whose request is the event `event_id` ('' when none)."""
        if not event_id:
            return ""
        return next((k for k, v in self.state.approvals.items() if v.get("event_id") == event_id), "")

    def may_command(self, sender: str) -> bool:
        allowed = set(self.conf.allowed) or {self.settings.admin_id}
        return sender in allowed or (self.conf.level1_humans and sender in self.level1)

    def flooding(self, sender: str) -> bool:
        now = self.clock()
        times = self.sent.setdefault(sender, deque())
        while times and now - times[0] > 60:
            times.popleft()
        times.append(now)
        return len(times) > self.conf.per_minute

    # The loop's side ----------------------------------------------------------------------------------

    def poll(self, inner: Callable[[], PollOutcome]) -> PollOutcome:
        """The daemon's poll: carry out waiting commands first, then poll as usual — unless a command just
        did (its outcome is this poll's, so a failed pass is not run twice in a row)."""
        polled: list[PollOutcome] = []

        def once() -> PollOutcome:
            polled.append(inner())
            return polled[-1]

        self.run_pending(once)
        return polled[-1] if polled else inner()

    def run_pending(self, inner: Callable[[], PollOutcome]) -> None:
        records: list[CommandRecord] = []
        while True:
            with self.lock:
                if not self.queue:
                    break
                work = self.queue.popleft()
            if work.withdrawn:
                reply, outcome = "", "withdrawn"
            elif work.command is not None:
                with self.lock:
                    self.carried_out[work.event_id] = work.text
                    while len(self.carried_out) > 200:
                        self.carried_out.pop(next(iter(self.carried_out)))
                try:
                    reply, outcome = execute(self, work.command, work.sender, inner)
                except Exception as exc:  # a command must never take the daemon down
                    log.exception("chat command failed")
                    reply, outcome = f"`{work.text}` failed: {REDACTOR.redact(str(exc))[:300]}", "failed"
            else:
                reply, outcome = work.reply, work.outcome
            if reply:
                self.say(reply, work.event_id)
            event(logging.INFO, "chat command", sender=work.sender, command=work.text, outcome=outcome)
            records.append(CommandRecord(work.event_id, work.sender, work.text, now_iso(), outcome,
                                         REDACTOR.redact(reply.splitlines()[0] if reply else "")))
        if records:
            self.record(records)

    def say(self, text: str, to: str = "") -> str:
        """Post a notice (a reply to event `to` when given); its event ID, '' when it could not be sent."""
        self.replies += 1
        if not self.active():
            event(logging.INFO, "chat reply not sent: this replica does not lead")
            return ""
        try:
            return str(self.client.reply(REDACTOR.redact(text), to, key=f"{to}:{self.replies}:{time.time_ns()}"))
        except Exception as exc:
            event(logging.WARNING, "chat reply not sent", error=REDACTOR.redact(str(exc)))
            return ""

    def record(self, records: list[CommandRecord]) -> None:
        """One status commit recording these commands (who, what, when, outcome)."""
        store = self.reconciler.store
        if store is None:
            return
        first = records[0]
        subject = (f"{COMMAND_SUBJECT} {first.sender} `{first.command}` → {first.outcome}" if len(records) == 1
                   else f"{COMMAND_SUBJECT} {len(records)} commands, the first `{first.command}` by {first.sender}")
        try:
            fetch = getattr(store, "fetch", None)
            if callable(fetch):
                fetch()
            store.write(store.read().with_commands(records), subject=subject)
        except Exception as exc:
            event(logging.WARNING, "chat commands not recorded in status", error=REDACTOR.redact(str(exc)))

    def force(self) -> None:
        """The next poll runs a pass on the head even when it did not move."""
        if hasattr(self.poller, "force_next"):
            self.poller.force_next = True
        elif hasattr(self.poller, "digest"):
            self.poller.digest = ""

    def new_approval(self, commit: str, fingerprint: str, deleted: list[str], reasons: list[str],
                     plan: dict[str, Any], stopped: list[str] | None = None) -> tuple[Approval, bool]:
        """The pending approval for this plan (and False), or a new one (and True)."""
        for data in self.state.approvals.values():
            if (data["commit"], data["fingerprint"], data["status"]) == (commit, fingerprint, "pending") and \
                    data["expires"] > self.clock():
                return Approval(**data), False
        ident = "".join(secrets.choice(ALPHABET) for _ in range(6))
        while ident in self.state.approvals:
            ident = "".join(secrets.choice(ALPHABET) for _ in range(6))
        now = self.clock()
        a = Approval(ident, commit, fingerprint, now, now + self.conf.approval_ttl, deleted, reasons, plan=plan,
                     stopped=list(stopped or ()))
        self.put(a)
        return a, True

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
        if self.active():
            self.save()  # the latest position, for the restart
        self.client.close()


def without_fallback(body: str) -> str:
    """A reply's own text: clients may quote the message replied to first (`> ...` lines, then a blank line)."""
    lines = body.splitlines()
    if not lines or not lines[0].startswith(">"):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    return "\n".join(lines).strip()


def attach(settings: Settings, reconciler: Reconciler, poller: Any, *, wake: threading.Event,
           stop: threading.Event, listen: bool = True, gate: Callable[[], bool] | None = None) -> ChatOps | None:
    """ChatOps for the daemon when the settings have a Matrix section and chatops enabled, else None. With a
    `gate` (several replicas), it listens and answers only while the gate is open."""
    if settings.matrix is None or not settings.matrix.url or not settings.chatops.enabled:
        return None
    try:
        chat = ChatOps(settings, reconciler, poller, wake=wake, stop=stop)
        chat.gate = gate
    except Exception as exc:  # no Matrix backend here: the daemon runs on without chat commands
        event(logging.ERROR, "chat commands unavailable", error=REDACTOR.redact(str(exc)))
        return None
    good = reconciler.state.last_good_commit
    tree = getattr(poller, "_tree", None)
    if settings.chatops.level1_humans and good and callable(tree):
        try:
            assert isinstance(reconciler.pass_fn, GuardedPass)
            reconciler.pass_fn.learn_from(tree(good), good)
        except Exception as exc:  # learned at the next pass instead
            event(logging.WARNING, "chat commands: level-1 Humans not known yet", error=REDACTOR.redact(str(exc)))
    event(logging.INFO, "chat commands", room=chat.room, listening=listen)
    return chat.start() if listen else chat

