"""The daemon's memory across restarts: the last processed commit, escalation state, failure counts (loop.json),
and how the daemon keeps such small state files: whole JSON documents, replaced atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, TypeVar

S = TypeVar("S", bound="JsonState")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class JsonState:
    """A dataclass kept as one JSON file: a missing, unreadable or foreign file reads as the defaults, unknown
    keys are dropped, and a save replaces the file atomically."""

    __slots__ = ()
    INDENT: ClassVar[int | None] = None

    @classmethod
    def load(cls: type[S], path: Path) -> S:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        text = json.dumps(asdict(self), indent=self.INDENT, sort_keys=True)  # type: ignore[call-overload]
        write_atomic(path, text.encode("utf-8"))


@dataclass(slots=True)
class LoopState(JsonState):
    """What the daemon must remember across restarts (state_dir/loop.json)."""

    INDENT = 2  # not annotated: a class attribute, never a field

    last_commit: str = ""  # the last org commit a pass processed
    last_result: str = ""
    last_seen_head: str = ""  # the remote head at that time (may be our own status commit)
    last_good_commit: str = ""
    escalation: dict[str, str] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # consecutive failures of the source, the status push
