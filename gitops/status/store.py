"""Where status is kept: files in a directory (watch mode) or status commits pushed with retries, and their history.

A git store writes one commit per run on the status branch, or under `status.path` on the org branch itself.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pygit2
import yaml
from pygit2.enums import FileMode

from gitops.diagnostics import counts, diag
from gitops.settings.load import REDACTOR
from gitops.settings.model import StatusSettings
from gitops.source.git import (
    RECONCILED_TRAILER,
    GitSource,
    GitSourceError,
    PushRejected,
    error_diagnostic,
    is_status_commit,
)
from gitops.status.model import RunSummary, StatusSnapshot
from gitops.status.render import RESULT_TRAILER, SUMMARY_FILE, commit_message, parse_tree, render

COMMAND_SUBJECT = "chatops:"  # the first word of a status commit that records chat commands


class StatusStore(Protocol):
    """Where status lives: a git branch (or path), or a plain directory in watch mode."""

    def read(self) -> StatusSnapshot: ...

    def write(self, snapshot: StatusSnapshot, subject: str = "") -> str | None:
        """Persist the snapshot; return the new status commit id (None when nothing was written). `subject`:
        the commit's first line when it records something other than a pass (a chat command)."""
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

    def write(self, snapshot: StatusSnapshot, subject: str = "") -> str | None:
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

    def write(self, snapshot: StatusSnapshot, subject: str = "") -> str | None:
        files = render(snapshot)
        message = commit_message(snapshot, subject)
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
        subject = commit.message.splitlines()[0] if commit.message else ""
        committed = datetime.fromtimestamp(commit.commit_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        command = subject.startswith(COMMAND_SUBJECT)  # chat commands recorded (docs/chatops.md), not a run
        return StatusEntry(
            status_commit=str(commit.id),
            reconciled_commit=trailers.get(RECONCILED_TRAILER, "").strip(),
            result="Command" if command else trailers.get(RESULT_TRAILER, s.result).strip(),
            time=committed if command else s.time or committed,
            subject=subject,
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
