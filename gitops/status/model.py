"""The status model: what each run observed and did, per resource, and how a pass merges into the previous status.

Only fields listed here ever reach a status file (`to_dict`), and every text passes through the secret redactor.
Rendering to files is `gitops.status.render`; where status is kept is `gitops.status.store`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any

from gitops import KINDS
from gitops.diagnostics import Diagnostic, Severity, counts, diag, sort_key
from gitops.settings.load import REDACTOR

MAX_TEXT = 2000  # a status field is a summary; the full story is in the logs


class Result(StrEnum):
    """What a run did with a commit."""

    RECONCILED = "Reconciled"  # planned, applied and verified
    VALIDATED = "Validated"  # valid; no provider configured, nothing applied
    INVALID = "Invalid"  # validation errors: nothing applied, the last good commit stays in force
    FAILED = "Failed"  # applying failed for some resources, or the pass crashed
    REFUSED = "Refused"  # not reconciled on purpose: bad signature, refused force-push
    SUSPENDED = "Suspended"  # planned only: applying is suspended (a chat command); nothing applied


class Phase(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    INVALID = "Invalid"
    FAILED = "Failed"
    DEGRADED = "Degraded"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "status": self.status, "reason": self.reason, "message": _clean(self.message)}


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """The observed status of one org resource. Never carries a secret (generated passwords stay in the store)."""

    kind: str
    name: str
    phase: str
    observed_commit: str = ""
    conditions: tuple[Condition, ...] = ()
    matrix_user_id: str = ""
    rooms: Mapping[str, str] = field(default_factory=dict)
    container: Mapping[str, str] = field(default_factory=dict)
    last_error: str = ""
    failures: int = 0
    file: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def with_condition(self, cond: Condition) -> ResourceStatus:
        rest = tuple(c for c in self.conditions if c.type != cond.type)
        return replace(self, conditions=(*rest, cond))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "phase": self.phase,
            "observedCommit": self.observed_commit or None,
            "file": self.file or None,
            "conditions": [c.to_dict() for c in self.conditions],
            "matrixUserId": self.matrix_user_id or None,
            "rooms": dict(sorted(self.rooms.items())),
            "container": dict(sorted(self.container.items())),
            "lastError": _clean(self.last_error) or None,
            "failures": self.failures,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceStatus:
        return cls(
            kind=str(data.get("kind", "")),
            name=str(data.get("name", "")),
            phase=str(data.get("phase", "")),
            observed_commit=str(data.get("observedCommit") or ""),
            conditions=tuple(
                Condition(str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")),
                          str(c.get("message") or ""))
                for c in data.get("conditions") or [] if isinstance(c, Mapping)
            ),
            matrix_user_id=str(data.get("matrixUserId") or ""),
            rooms={str(k): str(v) for k, v in (data.get("rooms") or {}).items()},
            container={str(k): str(v) for k, v in (data.get("container") or {}).items()},
            last_error=str(data.get("lastError") or ""),
            failures=int(data.get("failures") or 0),
            file=str(data.get("file") or ""),
        )


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass over a commit produced: the daemon turns it into status, metrics and escalation.

    `resources` is the complete set of resources the commit declares (for Invalid results: those whose
    documents have errors). `provider_failures` counts failed changes per provider.
    """

    result: Result
    diagnostics: tuple[Diagnostic, ...] = ()
    resources: tuple[ResourceStatus, ...] = ()
    plan: Mapping[str, Any] | None = None
    message: str = ""
    provider_failures: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The run as a whole: which commit, what happened, and why."""

    commit: str
    result: str
    message: str = ""
    time: str = ""
    previous_commit: str = ""
    last_good_commit: str = ""  # the last commit whose desired state is in force
    diagnostics: tuple[Diagnostic, ...] = ()
    plan: Mapping[str, Any] | None = None
    force_push: Mapping[str, str] | None = None
    signature: Mapping[str, Any] | None = None
    source: str = ""

    def to_dict(self, phases: Mapping[str, int] | None = None) -> dict[str, Any]:
        errors, warnings = counts(self.diagnostics)
        return {
            "commit": self.commit,
            "result": self.result,
            "message": _clean(self.message),
            "time": self.time,
            "source": self.source or None,
            "previousCommit": self.previous_commit or None,
            "lastGoodCommit": self.last_good_commit or None,
            "errors": errors,
            "warnings": warnings,
            "diagnostics": [_diagnostic_dict(d) for d in sorted(self.diagnostics, key=sort_key)],
            "plan": _plain(self.plan) if self.plan is not None else None,
            "forcePush": dict(self.force_push) if self.force_push else None,
            "signature": dict(self.signature) if self.signature else None,
            "phases": dict(sorted((phases or {}).items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        diags = []
        for d in data.get("diagnostics") or []:
            if isinstance(d, Mapping) and d.get("code"):
                try:
                    diags.append(diag(str(d["code"]), str(d.get("message", "")), file=str(d.get("file") or ""),
                                      line=int(d.get("line") or 0), column=int(d.get("column") or 0),
                                      path=str(d.get("path") or ""), hint=str(d.get("hint") or ""),
                                      severity=str(d.get("severity") or "error")))
                except (KeyError, ValueError):
                    continue  # a code this version does not know
        return cls(
            commit=str(data.get("commit") or ""),
            result=str(data.get("result") or ""),
            message=str(data.get("message") or ""),
            time=str(data.get("time") or ""),
            previous_commit=str(data.get("previousCommit") or ""),
            last_good_commit=str(data.get("lastGoodCommit") or ""),
            diagnostics=tuple(diags),
            plan=data.get("plan") if isinstance(data.get("plan"), Mapping) else None,
            force_push=data.get("forcePush") if isinstance(data.get("forcePush"), Mapping) else None,
            signature=data.get("signature") if isinstance(data.get("signature"), Mapping) else None,
            source=str(data.get("source") or ""),
        )


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One chat command (docs/chatops.md) as status history keeps it: who, what, when, outcome."""

    event_id: str
    sender: str
    command: str
    time: str
    outcome: str  # done | refused | rejected | failed | ignored
    reply: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"eventId": self.event_id, "sender": self.sender, "command": _clean(self.command),
                "time": self.time, "outcome": self.outcome, "reply": _clean(self.reply)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommandRecord:
        return cls(*(str(data.get(k) or "") for k in ("eventId", "sender", "command", "time", "outcome", "reply")))


MAX_COMMANDS = 100  # command records kept in the status tree (older ones stay in the status branch's history)


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything the status tree holds: the last run, every resource, and the latest chat commands."""

    summary: RunSummary | None = None
    resources: Mapping[str, ResourceStatus] = field(default_factory=dict)
    commands: tuple[CommandRecord, ...] = ()

    def with_commands(self, records: Iterable[CommandRecord]) -> StatusSnapshot:
        return replace(self, commands=(*self.commands, *records)[-MAX_COMMANDS:])

    def phases(self) -> dict[str, int]:
        return dict(Counter(r.phase for r in self.resources.values()))

    def sorted_resources(self) -> list[ResourceStatus]:
        order = {k: i for i, k in enumerate(KINDS)}
        return sorted(self.resources.values(), key=lambda r: (order.get(r.kind, len(order)), r.kind, r.name))


# Merging a pass into the previous status ------------------------------------------------------------


def merge(
    previous: StatusSnapshot,
    outcome: PassResult,
    summary: RunSummary,
    degraded_after: int,
) -> StatusSnapshot:
    """The new status: a run that applied replaces the resource set; one that did not keeps the last one.

    Consecutive failures are counted per resource; at `degraded_after` the phase becomes Degraded.
    """
    prev = previous.resources
    if outcome.result in (Result.RECONCILED, Result.VALIDATED, Result.FAILED) and outcome.resources:
        resources: dict[str, ResourceStatus] = {}
        for res in outcome.resources:
            before = prev.get(res.key)
            if res.phase in (Phase.FAILED, Phase.DEGRADED):
                failures = (before.failures if before else 0) + 1
                phase = Phase.DEGRADED.value if failures >= degraded_after else Phase.FAILED.value
                res = replace(res, failures=failures, phase=phase)
            else:
                res = replace(res, failures=0)
            resources[res.key] = res
        return StatusSnapshot(summary, resources, previous.commands)
    if outcome.result is Result.INVALID:
        carried = dict(prev)
        for res in outcome.resources:
            before = carried.get(res.key)
            cond = res.condition("Valid") or Condition("Valid", "False", "ValidationFailed", res.last_error)
            if before is None:
                carried[res.key] = res.with_condition(cond)
            else:
                carried[res.key] = before.with_condition(cond)
        # Resources that are fine in the new commit keep their status, marked as not re-validated for it.
        note = Condition("Reconciled", "False", "InvalidCommit",
                         f"commit {summary.commit[:12]} is invalid; nothing was applied")
        return StatusSnapshot(summary, {k: v.with_condition(note) for k, v in carried.items()}, previous.commands)
    # Refused, suspended, or a pass that crashed before producing resources: nothing changed; say why on each.
    reason = {Result.REFUSED: "RefusedCommit", Result.SUSPENDED: "Suspended"}.get(outcome.result, "PassFailed")
    note = Condition("Reconciled", "False", reason, _first_line(summary.message))
    return StatusSnapshot(summary, {k: v.with_condition(note) for k, v in prev.items()}, previous.commands)


def invalid_resources(
    diagnostics: Sequence[Diagnostic], documents: Iterable[tuple[str, str, str]]
) -> tuple[ResourceStatus, ...]:
    """Resources (kind, name, file) whose file has an error, each with its first error as the reason."""
    errors_by_file: dict[str, list[Diagnostic]] = {}
    for d in sorted(diagnostics, key=sort_key):
        if d.severity is Severity.ERROR and d.file:
            errors_by_file.setdefault(d.file, []).append(d)
    out: dict[str, ResourceStatus] = {}
    for kind, name, file in documents:
        errs = errors_by_file.get(file)
        if not errs:
            continue
        first = errs[0]
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        message = f"{first.location}: {first.code}: {first.message}{more}"
        res = ResourceStatus(kind, name, Phase.INVALID.value, observed_commit="", file=file, last_error=message,
                             conditions=(Condition("Valid", "False", "ValidationFailed", message),))
        out.setdefault(res.key, res)
    return tuple(out.values())


def _diagnostic_dict(d: Diagnostic) -> dict[str, Any]:
    out: dict[str, Any] = {"code": d.code, "severity": d.severity.value, "message": _clean(d.message)}
    for key in ("file", "line", "column", "path", "hint"):
        value = getattr(d, key)
        if value:
            out[key] = _clean(value) if isinstance(value, str) else value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _clean(text: str) -> str:
    text = REDACTOR.redact(text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " …"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
