"""The admin room as chat commands need it: the actor's long-poll `/sync` on one room, and notices sent as replies.

Built on the Matrix backend's session (its actor credentials, retries and secret redaction), obtained through
the provider registry like the escalation notifier's; the backend itself offers no long poll, so the two calls
live here. Only the room's timeline is asked for (messages and redactions), never its state.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gitops.settings.model import Settings

CLIENT = "/_matrix/client/v3"
TIMELINE_LIMIT = 50


def _q(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class Batch:
    """One /sync answer for the room: where to continue, its events (oldest first), and whether some were cut."""

    next_batch: str
    events: tuple[Mapping[str, Any], ...]
    limited: bool


class RoomClient:
    """The actor in one room: resolve it, long-poll it, reply in it."""

    def __init__(self, settings: Settings, room: str) -> None:
        from gitops.providers import registry
        from gitops.providers.protocol import BackendContext

        assert settings.matrix is not None
        backend: Any = registry.create("matrix", BackendContext(
            settings=settings.matrix, instance=settings.runtime_or_default.instance,
            log=logging.getLogger("hiclaw_gitops.backend.matrix")))
        self.backend = backend
        self.session: Any = self.backend.session
        self.actor: str = str(self.backend.actor)
        self.room = room
        self.room_id = room if room.startswith("!") else ""
        self.request_timeout = float(settings.matrix.timeout or 30.0)

    def resolve(self) -> str:
        if not self.room_id:
            answer = self.session.call("GET", f"{CLIENT}/directory/room/{_q(self.room)}",
                                       f"resolve the admin room {self.room}")
            room_id = answer.get("room_id")
            if not isinstance(room_id, str) or not room_id:
                raise ValueError(f"resolve the admin room {self.room}: the answer has no room_id")
            self.room_id = room_id
        return self.room_id

    def _filter(self, limit: int) -> str:
        return json.dumps({
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "rooms": [self.resolve()],
                "timeline": {"limit": limit, "types": ["m.room.message", "m.room.redaction"]},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
                "include_leave": False,
            },
        })

    def sync(self, since: str, timeout: float) -> Batch:
        """New events since `since` (waiting up to `timeout` s); with no token, only the position to start from."""
        wait = min(timeout, max(1.0, self.request_timeout - 5))  # the long poll ends before the request times out
        params = {"filter": self._filter(TIMELINE_LIMIT if since else 0), "set_presence": "offline",
                  "timeout": str(int(wait * 1000) if since else 0)}
        if since:
            params["since"] = since
        answer = self.session.call("GET", f"{CLIENT}/sync", "sync (chat commands)", params=params)
        token = answer.get("next_batch")
        if not isinstance(token, str) or not token:
            raise ValueError("sync (chat commands): the answer has no next_batch")
        room = ((answer.get("rooms") or {}).get("join") or {}).get(self.room_id) or {}
        timeline = room.get("timeline") if isinstance(room, Mapping) else None
        events = timeline.get("events") if isinstance(timeline, Mapping) else None
        good = tuple(e for e in events or () if isinstance(e, Mapping)) if since else ()
        limited = bool(timeline.get("limited")) if isinstance(timeline, Mapping) and since else False
        return Batch(token, good, limited)

    def reply(self, text: str, to: str = "", key: str = "") -> str:
        """Post `text` as a notice, a reply to event `to` when given; its event ID. `key` makes a retried send
        the same transaction (the homeserver keeps one message)."""
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": to}}
        txn = "hiclaw-chatops-" + hashlib.sha256(f"{key or text}\0{to}".encode()).hexdigest()[:24]
        answer = self.session.call("PUT", f"{CLIENT}/rooms/{_q(self.resolve())}/send/m.room.message/{txn}",
                                   "reply in the admin room", body=content)
        return str(answer.get("event_id") or "")

    def close(self) -> None:
        self.backend.close()
