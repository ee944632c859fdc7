"""The daemon's memory across restarts: the last processed commit, escalation state, failure counts (loop.json)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(slots=True)
class LoopState:
    """What the daemon must remember across restarts (state_dir/loop.json)."""

    last_commit: str = ""  # the last org commit a pass processed
    last_result: str = ""
    last_seen_head: str = ""  # the remote head at that time (may be our own status commit)
    last_good_commit: str = ""
    escalation: dict[str, str] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # consecutive failures of the source, the status push

    @classmethod
    def load(cls, path: Path) -> LoopState:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".loop-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
