"""The write fence around the daemon's own writes: status commits and escalation messages.

The executor fences every provider write (gitops.apply.executor); what the daemon itself writes after a pass —
the status commit and a message in the admin's room — is fenced here, so a leader paused past its renew
deadline that wakes in the middle of a pass records nothing either: the new leader reports.
"""

from __future__ import annotations

from gitops.daemon.leader import NotLeading, may_write
from gitops.daemon.notify import Message, Notifier
from gitops.diagnostics import diag
from gitops.source.git import GitSourceError
from gitops.status.model import StatusSnapshot
from gitops.status.store import GitStatusStore


class FencedStatusStore(GitStatusStore):
    """A GitStatusStore that writes only while this replica leads; otherwise the write is a failure the poller
    retries (the commit is processed again, by whichever replica leads)."""

    def write(self, snapshot: StatusSnapshot, subject: str = "") -> str | None:
        if not may_write():
            raise GitSourceError(diag(
                "G608", "status not written: this replica does not hold the leader lease (any more)",
                hint="nothing to do: the replica that leads reconciles the commit and writes its status"))
        return super().write(snapshot, subject)


class FencedNotifier:
    """Sends only while this replica leads; otherwise the message counts as not sent (tried again later)."""

    def __init__(self, inner: Notifier) -> None:
        self.inner = inner

    def send(self, message: Message) -> None:
        if not may_write():
            raise NotLeading("escalation message not sent: this replica does not hold the leader lease")
        self.inner.send(message)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
