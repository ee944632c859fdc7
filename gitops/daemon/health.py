"""Liveness and readiness: what /healthz and /readyz report, updated by the loop."""

from __future__ import annotations

import threading
import time
from typing import Any


class Health:
    """What /healthz and /readyz report, updated by the loop."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last_beat = self.started
        self.loop_alive = True
        self.ready = False
        self.reason = "no poll yet"
        self.leading: bool | None = None  # None: no leader election in this process
        self._lock = threading.Lock()

    def beat(self) -> None:
        with self._lock:
            self.last_beat = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        with self._lock:
            self.ready, self.reason = ready, reason

    def set_leading(self, leading: bool) -> None:
        with self._lock:
            self.leading = leading

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            snap = {"alive": self.loop_alive, "ready": self.ready, "reason": self.reason,
                    "since_last_beat_seconds": round(time.monotonic() - self.last_beat, 3)}
            if self.leading is not None:
                snap["leader"] = self.leading
            return snap
