"""What ChatOps remembers across restarts (state_dir/chatops.json): the listener's position, the events handled,
the suspension, and the approvals with the exact plan each one binds to while it may still be used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitops.daemon.loopstate import JsonState


@dataclass(slots=True)
class Approval:
    """A plan a guard stopped (prune or state), waiting for a person's word in chat."""

    id: str
    commit: str
    fingerprint: str
    created: float
    expires: float
    deleted: list[str]
    reasons: list[str]
    status: str = "pending"  # pending | applying | applied | failed | rejected | void | expired
    by: str = ""
    note: str = ""
    plan: dict[str, Any] | None = None  # the exact plan, while it may still be approved
    event_id: str = ""  # the message asking for it (a reply to it may leave the ID out)
    stopped: list[str] = field(default_factory=list)  # agents stopped or put to sleep by enforce-state


@dataclass(slots=True)
class ChatState(JsonState):
    """What the listener must remember across restarts (state_dir/chatops.json)."""

    since: str = ""
    room_id: str = ""
    handled: list[str] = field(default_factory=list)
    suspended: dict[str, str] = field(default_factory=dict)  # {"by", "at"} while applying is suspended
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
