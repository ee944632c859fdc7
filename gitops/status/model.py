"""Status: what each run observed and did, per resource, written back to git as one commit per run.

Layout (SPEC §6): `status/<kind>/<name>.yaml` per resource, `status/summary.yaml` for the run as a whole
and `status/README.md` as a table for people — on the status branch, or under a path on the org branch.
Every status commit carries the trailers `Reconciled-Commit: <sha>` and `Hiclaw-Gitops-Status: true`.
Only fields listed here ever reach a status file, and every text passes through the secret redactor.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Protocol

import pygit2
import yaml
from pygit2.enums import FileMode

from gitops import KINDS
from gitops.diagnostics import Diagnostic, Severity, counts, diag, sort_key
from gitops.settings.load import REDACTOR
from gitops.settings.model import StatusSettings
from gitops.source.git import (
    RECONCILED_TRAILER,
    STATUS_TRAILER,
    GitSource,
    GitSourceError,
    PushRejected,
    error_diagnostic,
    is_status_commit,
)

RESULT_TRAILER = "Hiclaw-Gitops-Result"
SUMMARY_FILE = "summary.yaml"
README_FILE = "README.md"
HEADER = "# Written by hiclaw-gitops after each run; edits are overwritten.\n"
MAX_README_DIAGNOSTICS = 50
MAX_TEXT = 2000  # a status field is a summary; the full story is in the logs


class Result(StrEnum):
    """What a run did with a commit."""

    RECONCILED = "Reconciled"  # planned, applied and verified
    VALIDATED = "Validated"  # valid; no provider configured, nothing applied
    INVALID = "Invalid"  # validation errors: nothing applied, the last good commit stays in force
    FAILED = "Failed"  # applying failed for some resources, or the pass crashed
    REFUSED = "Refused"  # not reconciled on purpose: bad signature, refused force-push


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
class StatusSnapshot:
    """Everything the status tree holds: the last run and every resource."""

    summary: RunSummary | None = None
    resources: Mapping[str, ResourceStatus] = field(default_factory=dict)

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
        return StatusSnapshot(summary, resources)
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
        return StatusSnapshot(summary, {k: v.with_condition(note) for k, v in carried.items()})
    # Refused, or a pass that crashed before producing resources: nothing changed; say why on each resource.
    reason = "RefusedCommit" if outcome.result is Result.REFUSED else "PassFailed"
    note = Condition("Reconciled", "False", reason, _first_line(summary.message))
    return StatusSnapshot(summary, {k: v.with_condition(note) for k, v in prev.items()})


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


# Rendering ------------------------------------------------------------------------------------------


def render(snapshot: StatusSnapshot) -> dict[str, bytes]:
    """File name (relative to the status directory) → content, for every file of the status tree."""
    files: dict[str, bytes] = {}
    for res in snapshot.resources.values():
        files[f"{res.kind.lower()}/{res.name}.yaml"] = _yaml(res.to_dict())
    if snapshot.summary is not None:
        files[SUMMARY_FILE] = _yaml(snapshot.summary.to_dict(snapshot.phases()))
    files[README_FILE] = REDACTOR.redact(render_readme(snapshot)).encode()
    return files


def _yaml(data: Mapping[str, Any]) -> bytes:
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=120)
    return (HEADER + REDACTOR.redact(text)).encode()


def render_readme(snapshot: StatusSnapshot) -> str:
    s = snapshot.summary
    lines = ["# HiClaw org status", ""]
    if s is not None:
        lines.append(f"Last run: **{s.result}** for commit `{s.commit[:12]}` at {s.time}.")
        if s.last_good_commit and s.last_good_commit != s.commit:
            lines.append(f"The last valid commit is `{s.last_good_commit[:12]}`.")
        if s.message:
            lines += ["", _md(s.message)]
        if s.force_push:
            lines += ["", f"⚠ The branch was rewritten (force-push): `{str(s.force_push.get('previous', ''))[:12]}` "
                          f"is not an ancestor of `{str(s.force_push.get('new', ''))[:12]}`."]
        if s.signature:
            who = s.signature.get("signer") or "unknown"
            state = "verified" if s.signature.get("verified") else "NOT verified"
            lines += ["", f"Signature: {state} ({s.signature.get('method') or 'unsigned'}, {who})."]
    lines += ["", "| Kind | Name | Phase | Observed commit | Failures | Message |", "|---|---|---|---|---|---|"]
    for r in snapshot.sorted_resources():
        message = r.last_error or next((c.message for c in r.conditions if c.status != "True" and c.message), "")
        observed = f"`{r.observed_commit[:12]}`" if r.observed_commit else "—"
        lines.append(
            f"| {r.kind} | {_md(r.name)} | {r.phase} | {observed} | {r.failures} | {_md(_first_line(message))} |"
        )
    if not snapshot.resources:
        lines.append("| — | — | — | — | — | no resources |")
    if s is not None and s.diagnostics:
        errors, warnings = counts(s.diagnostics)
        lines += ["", f"## Diagnostics ({errors} errors, {warnings} warnings)", ""]
        for d in sorted(s.diagnostics, key=sort_key)[:MAX_README_DIAGNOSTICS]:
            where = f"`{d.location}` " if d.location else ""
            lines.append(f"- {where}{d.severity.value}[{d.code}]: {_md(d.message)}")
        if len(s.diagnostics) > MAX_README_DIAGNOSTICS:
            lines.append(f"- … and {len(s.diagnostics) - MAX_README_DIAGNOSTICS} more (see summary.yaml)")
    return "\n".join(lines) + "\n"


def commit_message(snapshot: StatusSnapshot) -> str:
    s = snapshot.summary
    phases = ", ".join(f"{n} {p}" for p, n in sorted(snapshot.phases().items())) or "no resources"
    commit = s.commit if s else ""
    result = s.result if s else "Unknown"
    body = f"status: {result} {commit[:12]} ({phases})\n"
    if s and s.message:
        body += f"\n{_first_line(s.message)}\n"
    body += f"\n{RECONCILED_TRAILER}: {commit}\n{RESULT_TRAILER}: {result}\n{STATUS_TRAILER}: true\n"
    return REDACTOR.redact(body)


def parse_tree(files: Mapping[str, bytes]) -> StatusSnapshot:
    """Read a status tree back (the inverse of render); unreadable files are skipped."""
    summary: RunSummary | None = None
    resources: dict[str, ResourceStatus] = {}
    for name, content in files.items():
        if not name.endswith(".yaml"):
            continue
        try:
            data = yaml.safe_load(content.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if not isinstance(data, Mapping):
            continue
        if name == SUMMARY_FILE:
            summary = RunSummary.from_dict(data)
        elif "/" in name:
            res = ResourceStatus.from_dict(data)
            if res.kind and res.name:
                resources[res.key] = res
    return StatusSnapshot(summary, resources)


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


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Stores ---------------------------------------------------------------------------------------------


class StatusStore(Protocol):
    """Where status lives: a git branch (or path), or a plain directory in watch mode."""

    def read(self) -> StatusSnapshot: ...

    def write(self, snapshot: StatusSnapshot) -> str | None:
        """Persist the snapshot; return the new status commit id (None when nothing was written)."""
        ...


class DirectoryStatusStore:
    """Status as plain files in a directory (watch mode, where there is no git remote to write to)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def read(self) -> StatusSnapshot:
        if not self.root.is_dir():
            return StatusSnapshot()
        files = {
            p.relative_to(self.root).as_posix(): p.read_bytes() for p in self.root.rglob("*") if p.is_file()
        }
        return parse_tree(files)

    def write(self, snapshot: StatusSnapshot) -> str | None:
        files = render(snapshot)
        self.root.mkdir(parents=True, exist_ok=True)
        for old in list(self.root.rglob("*.yaml")):
            if old.relative_to(self.root).as_posix() not in files:
                old.unlink()
        for name, content in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return None


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One status commit, as `history` shows it."""

    status_commit: str
    reconciled_commit: str
    result: str
    time: str
    subject: str
    phases: Mapping[str, int] = field(default_factory=dict)
    errors: int = 0
    warnings: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "statusCommit": self.status_commit,
            "reconciledCommit": self.reconciled_commit,
            "result": self.result,
            "time": self.time,
            "subject": self.subject,
            "phases": dict(self.phases),
            "errors": self.errors,
            "warnings": self.warnings,
        }


class GitStatusStore:
    """Status commits on the status branch, or under `status.path` on the org branch itself.

    Writing is fetch → build the tree in memory on top of the remote tip → commit → push, retried when
    the branch moved meanwhile. libgit2 reports that in three ways (SPEC deps §1): the remote tip is not
    present locally, it is present but ours does not descend from it, or — only through the
    push_update_reference callback — the server refused the update.
    """

    def __init__(
        self,
        source: GitSource,
        settings: StatusSettings,
        *,
        before_push: Callable[[int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.settings = settings
        self.same_branch = bool(settings.path.strip("/"))
        self.branch = source.branch if self.same_branch else settings.branch
        self.prefix = settings.path.strip("/") if self.same_branch else "status"
        self.before_push = before_push  # test hook: called with the attempt number just before each push
        self.sleep = sleep
        self.attempts = 0  # pushes tried by the last write
        self.rejections: list[str] = []  # why earlier attempts of the last write were refused

    @property
    def repo(self) -> pygit2.Repository:
        return self.source.repo

    def fetch(self) -> str | None:
        """Fetch the status branch; its tip (None when it does not exist yet)."""
        return self.source.fetch_branch(self.branch)

    def tip(self) -> str | None:
        return self.source.tip(self.branch)

    def read(self, commit: str | None = None) -> StatusSnapshot:
        """The status tree at a status commit (default: the fetched tip), without fetching."""
        oid = commit or self.tip()
        if oid is None:
            return StatusSnapshot()
        return parse_tree(dict(self._files(self.source.commit(oid).tree)))

    def _files(self, tree: pygit2.Tree) -> Iterator[tuple[str, bytes]]:
        try:
            entry = tree[self.prefix]
        except KeyError:
            return
        sub = self.repo[entry.id]
        if isinstance(sub, pygit2.Tree):
            yield from _walk_blobs(self.repo, sub, "")

    def write(self, snapshot: StatusSnapshot) -> str | None:
        files = render(snapshot)
        message = commit_message(snapshot)
        retries = max(1, self.settings.push_retries)
        sig = pygit2.Signature(self.settings.author_name, self.settings.author_email)
        last: Exception | None = None
        self.attempts = 0
        self.rejections = []
        for attempt in range(1, retries + 2):
            self.attempts = attempt
            base_id = self.fetch()
            base = self.source.commit(base_id) if base_id else None
            tree_id = self._tree(base, files)
            if base is not None and base.tree_id == tree_id:
                return None  # identical status: nothing to record
            new = self.repo.create_commit(None, sig, sig, message, tree_id, [base.id] if base else [])
            local = f"refs/heads/{self.branch}"
            self.repo.references.create(local, new, force=True)
            if self.before_push is not None:
                self.before_push(attempt)
            try:
                self.source.repo.remotes["origin"].push([f"{local}:{local}"], callbacks=self.source.callbacks())
            except PushRejected as exc:
                last = exc  # server-side refusal (surface 3): retry on top of the new tip
                self.rejections.append(f"rejected by the server: {exc.message}")
            except pygit2.GitError as exc:
                text = str(exc)
                if "not present locally" in text or "non-fastforwardable" in text or "non-fast-forward" in text:
                    last = exc  # surfaces 1 and 2: the branch moved; rebuild on the new tip
                    self.rejections.append(text)
                else:
                    raise GitSourceError(error_diagnostic(exc, self.source.url, "pushing status to")) from None
            else:
                self.repo.references.create(self.source.remote_ref(self.branch), new, force=True)
                return str(new)
            self.sleep(min(2.0, 0.05 * attempt) * (0.5 + random.random()))
        detail = last.message if isinstance(last, PushRejected) else str(last)
        raise GitSourceError(diag(
            "G608", f"the status commit could not be pushed to `{self.branch}` after {self.attempts} attempts: "
                    f"{REDACTOR.redact(detail)}",
            hint="check branch protection and hooks on the status branch: the reconciler must be allowed to push",
        ))

    def _tree(self, base: pygit2.Commit | None, files: Mapping[str, bytes]) -> pygit2.Oid:
        index = pygit2.Index()
        if base is not None:
            index.read_tree(base.tree)
            for entry in list(index):
                if entry.path == self.prefix or entry.path.startswith(self.prefix + "/"):
                    index.remove(entry.path)
        for name, content in sorted(files.items()):
            index.add(pygit2.IndexEntry(f"{self.prefix}/{name}", self.repo.create_blob(content), FileMode.BLOB))
        return index.write_tree(self.repo)

    def history(self, limit: int = 20) -> list[StatusEntry]:
        """Status commits, newest first, along the first-parent line of the (fetched) status branch."""
        tip = self.tip()
        out: list[StatusEntry] = []
        commit = self.source.commit(tip) if tip else None
        while commit is not None and len(out) < limit:
            if is_status_commit(commit):
                out.append(self._entry(commit))
            commit = commit.parents[0] if commit.parents else None
        return out

    def _entry(self, commit: pygit2.Commit) -> StatusEntry:
        trailers = commit.message_trailers
        raw: Any = None
        try:
            summary_blob = commit.tree[f"{self.prefix}/{SUMMARY_FILE}"]
            blob = self.repo[summary_blob.id]
            raw = yaml.safe_load(blob.data) if isinstance(blob, pygit2.Blob) else None
        except (KeyError, yaml.YAMLError):
            raw = None
        data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        s = RunSummary.from_dict(data)
        errors, warnings = counts(s.diagnostics)
        phases = data.get("phases") if isinstance(data.get("phases"), Mapping) else {}
        return StatusEntry(
            status_commit=str(commit.id),
            reconciled_commit=trailers.get(RECONCILED_TRAILER, "").strip(),
            result=trailers.get(RESULT_TRAILER, s.result).strip(),
            time=s.time or datetime.fromtimestamp(commit.commit_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            subject=commit.message.splitlines()[0] if commit.message else "",
            phases={str(k): int(v) for k, v in (phases or {}).items() if isinstance(v, int)},
            errors=errors,
            warnings=warnings,
        )

    def last_reconciled(self) -> str | None:
        """The commit named by the newest status commit's trailer (the durable record of progress)."""
        entries = self.history(limit=1)
        return entries[0].reconciled_commit or None if entries else None


def _walk_blobs(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, bytes]]:
    for entry in tree:
        obj = repo[entry.id]
        if isinstance(obj, pygit2.Tree):
            yield from _walk_blobs(repo, obj, f"{prefix}{entry.name}/")
        elif isinstance(obj, pygit2.Blob):
            yield f"{prefix}{entry.name}", obj.data
