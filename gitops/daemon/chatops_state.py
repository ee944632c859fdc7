"""What ChatOps remembers across restarts (state_dir/chatops.json): the listener's position, the events handled,
the suspension, and the approvals with the exact plan each one binds to while it may still be used."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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
class ChatState:
    """What the listener must remember across restarts (state_dir/chatops.json)."""

    since: str = ""
    room_id: str = ""
    handled: list[str] = field(default_factory=list)
    suspended: dict[str, str] = field(default_factory=dict)  # {"by", "at"} while applying is suspended
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ChatState:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".chatops-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, sort_keys=True)
        os.replace(tmp, path)
