"""The change set of an apply run: what happened to each object, and the run as a whole."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StepResult:
    """What happened to one object: the plan's action, the result, and why (never a secret value)."""

    key: str
    owner: str
    action: str  # the plan's action: create | update | replace | delete | noop
    status: Status
    message: str = ""
    attempts: int = 0
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "owner": self.owner,
            "action": self.action,
            "message": self.message,
            "attempts": self.attempts,
            "duration": round(self.duration, 4),
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    """The change set of one apply run.

    `verified` is true when every touched provider was observed again and showed every applied object as
    applied and every deleted one gone. `refused` says why nothing ran (the prune guard), or why the run stopped
    (this replica lost the leader lease: `executor.NOT_LEADING`). `resumed` lists
    the keys a killed earlier run left in flight.
    """

    run_id: str
    head: str
    steps: tuple[StepResult, ...]
    verified: bool
    duration: float
    refused: str = ""
    resumed: tuple[str, ...] = ()

    def with_status(self, status: Status) -> tuple[StepResult, ...]:
        return tuple(s for s in self.steps if s.status is status)

    @property
    def created(self) -> tuple[StepResult, ...]:
        return self.with_status(Status.CREATED)

    @property
    def configured(self) -> tuple[StepResult, ...]:
        return self.with_status(Status.CONFIGURED)

    @property
    def unchanged(self) -> tuple[StepResult, ...]:
        return self.with_status(Status.UNCHANGED)

    @property
    def deleted(self) -> tuple[StepResult, ...]:
        return self.with_status(Status.DELETED)

    @property
    def skipped(self) -> tuple[StepResult, ...]:
        return self.with_status(Status.SKIPPED)

    @property
    def failed(self) -> tuple[StepResult, ...]:
        return self.with_status(Status.FAILED)

    @property
    def ok(self) -> bool:
        """Everything planned happened and was verified (steps skipped only because something is kept are ok)."""
        return not self.refused and self.verified and not self.failed and not any(
            s.message.startswith("stopped") for s in self.skipped
        )

    def counts(self) -> dict[str, int]:
        return {s.value: len(self.with_status(s)) for s in Status}

    def step(self, key: str) -> StepResult | None:
        return next((s for s in self.steps if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "head": self.head,
            "ok": self.ok,
            "verified": self.verified,
            "refused": self.refused,
            "resumed": list(self.resumed),
            "duration": round(self.duration, 3),
            "counts": self.counts(),
        }
        for status in Status:
            out[status.value] = [s.to_dict() for s in self.with_status(status)]
        return out
