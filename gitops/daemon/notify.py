"""Escalation (SPEC §6 tiers 2–3): a message when something keeps failing, and one when it recovers.

A resource failing for `after_failures` consecutive runs is Degraded (the status merge marks it); this
module decides which messages to send: one per distinct failure of a resource, and one recovery message
when it clears. Messages go through a small `Notifier` protocol: a Matrix room (`RoomNotifier`, through the
Matrix backend) when a Matrix section is configured, else the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gitops.settings.load import REDACTOR

log = logging.getLogger("hiclaw_gitops.notify")


@dataclass(frozen=True, slots=True)
class Message:
    """One escalation message; every notifier renders the same fields in the same order."""

    kind: str  # "failure" or "recovery"
    resource: str
    commit: str
    error: str
    attempts: int
    action: str

    def text(self) -> str:
        if self.kind == "recovery":
            head = f"✅ hiclaw-gitops: {self.resource} recovered"
        else:
            head = f"🚨 hiclaw-gitops: {self.resource} is failing"
        lines = [
            head,
            f"Resource: {self.resource}",
            f"Commit: {self.commit[:12] or '—'}",
            f"Error: {self.error or '—'}",
            f"Attempts: {self.attempts}",
            f"What to do: {self.action}",
        ]
        return REDACTOR.redact("\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "resource": self.resource,
            "commit": self.commit,
            "error": REDACTOR.redact(self.error),
            "attempts": self.attempts,
            "action": self.action,
        }


class Notifier(Protocol):
    """Where escalation messages go (a Matrix room, the log, a test's list)."""

    def send(self, message: Message) -> None: ...


class LogNotifier:
    """Escalation messages as log lines: the fallback when no Matrix room is configured."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log

    def send(self, message: Message) -> None:
        level = logging.INFO if message.kind == "recovery" else logging.WARNING
        self.log.log(level, message.text().splitlines()[0], extra={"fields": {"escalation": message.to_dict()}})


@dataclass(frozen=True, slots=True)
class Failure:
    """A resource failing in the current run: its error and how many runs in a row it has failed."""

    error: str
    attempts: int
    action: str = ""


DEFAULT_ACTION = (
    "read the resource's lastError in the status branch (status/<kind>/<name>.yaml); fix the org chart or "
    "the backend, then push a commit or wait for the next retry"
)


def fingerprint(error: str) -> str:
    """The same failure with different numbers (ids, counts, ports, times) is not a new failure."""
    first = error.strip().splitlines()[0] if error.strip() else ""
    return re.sub(r"[0-9a-f]{7,}|\d+", "#", first.lower())


class EscalationTracker:
    """Sends a failure message once per distinct failure, and a recovery message when it clears.

    `state` (resource → fingerprint of the failure already reported) is persisted by the daemon so that
    a restart does not repeat messages. A message that could not be sent is tried again next run.
    """

    def __init__(self, notifier: Notifier, after_failures: int, state: Mapping[str, str] | None = None) -> None:
        self.notifier = notifier
        self.after_failures = max(1, after_failures)
        self.notified: dict[str, str] = dict(state or {})

    def observe(
        self,
        failing: Mapping[str, Failure],
        commit: str,
        *,
        observed: set[str] | None = None,
    ) -> list[Message]:
        """Report this run. `observed` lists resources the run really checked (None: all of them);
        recovery is only announced for those, so a run that applied nothing cannot claim a recovery."""
        sent: list[Message] = []
        for resource in sorted(failing):
            failure = failing[resource]
            if failure.attempts < self.after_failures:
                continue
            mark = fingerprint(failure.error)
            if self.notified.get(resource) == mark:
                continue
            message = Message("failure", resource, commit, failure.error, failure.attempts,
                              failure.action or DEFAULT_ACTION)
            if self._send(message):
                self.notified[resource] = mark
                sent.append(message)
        for resource in sorted(set(self.notified) - set(failing)):
            if observed is not None and resource not in observed:
                continue
            message = Message("recovery", resource, commit, "", 0, "nothing; it works again")
            if self._send(message):
                del self.notified[resource]
                sent.append(message)
        return sent

    def _send(self, message: Message) -> bool:
        try:
            self.notifier.send(message)
        except Exception as exc:  # a notifier failure must never stop reconciling
            log.error("escalation message not sent", extra={"fields": {"error": REDACTOR.redact(str(exc)),
                                                                        "resource": message.resource}})
            return False
        return True


class RoomNotifier:
    """Escalation messages as notices in a Matrix room, posted by the reconciler's actor through the Matrix
    backend (`post_notice(room, text)`); a message that cannot be posted raises, and the tracker tries again
    next run."""

    def __init__(self, post: Callable[[str, str], None], room: str, close: Callable[[], None] | None = None) -> None:
        self.post = post
        self.room = room
        self._close = close

    def send(self, message: Message) -> None:
        self.post(self.room, message.text())

    def close(self) -> None:
        if self._close is not None:
            self._close()


def notifier_from_settings(settings: Any) -> Notifier:
    """The notifier the settings ask for: with a Matrix section, the admin's room (`notify.room`, else the
    Manager DM `#hiclaw-manager-default:<server>`); otherwise, or when the Matrix backend cannot be built, the log."""
    matrix = getattr(settings, "matrix", None)
    if matrix is None or not getattr(matrix, "url", ""):
        return LogNotifier()
    from gitops.providers import registry
    from gitops.providers.protocol import BackendContext

    try:
        backend = registry.create("matrix", BackendContext(
            settings=matrix, instance=settings.runtime_or_default.instance,
            log=logging.getLogger("hiclaw_gitops.backend.matrix")))
    except Exception as exc:  # no Matrix backend here: escalation still reaches the log
        log.warning("escalation goes to the log: the Matrix backend is not available (%s)",
                    REDACTOR.redact(str(exc)))
        return LogNotifier()
    post = getattr(backend, "post_notice", None)
    if not callable(post):
        return LogNotifier()
    return RoomNotifier(post, room_of(settings), backend.close)


def room_of(settings: Any) -> str:
    """The admin's room: `notify.room`, else the Manager DM of the default Manager."""
    return str(settings.notify.room or f"#hiclaw-manager-default:{settings.server_name}")
