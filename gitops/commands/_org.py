"""Where a command's org comes from: a local folder (inside a git checkout or not) or a remote's commit.

Whatever the source, three things follow from it and every command uses them the same way:

- **paths** — diagnostics name files relative to the repository root: the git top level for a local folder
  (so `org/humans/bob.yaml`, not `humans/bob.yaml`, whatever the working directory), the `--path` inside a
  remote; outside any git repository, relative to the org folder;
- **head** — the commit the org was read from, `<commit>+dirty` when a checkout's org files differ from
  its HEAD commit, and for a folder outside git the content digest (`dir:…`) the pipeline computes;
- **what is not an org document** — left out as `gitops.orgfiles` says (the settings file in use, any
  `hiclaw-gitops.yaml` at the org root, the state directory inside the org).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from gitops.diagnostics import Diagnostic
from gitops.orgfiles import RESERVED_NAMES, OrgFiles, not_org_documents
from gitops.reports import rebased
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource, FileSource
from gitops.source.trees import CommitTreeSource, discover_repository


class OrgUnavailable(Exception):
    """The org cannot be read (not a directory, no such commit, a remote that fails); the message says why."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.diagnostics = tuple(diagnostics)


@dataclass(slots=True)
class OrgSource:
    """An org to read: its files, the repository-relative path of its root, and the head it stands for."""

    source: OrgFiles
    prefix: str  # the org root relative to the repository root ("" at the root, or outside git)
    where: str = ""  # for messages: the folder, or url#branch:path
    root: Path | None = None  # a local org's folder (resolved)
    repo: pygit2.Repository | None = None
    commit: str = ""  # a remote's tip; empty for a local folder (its head is worked out when asked for)
    fetch_branch: Callable[[str], object] | None = None  # a remote's: fetch another branch into the cache
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _head: str | None = None

    @property
    def head(self) -> str:
        """The commit read (`+dirty` when a checkout's org files differ from HEAD's); "" outside git, where the
        pipeline uses the content digest."""
        if self._head is None:
            if self.commit or self.repo is None:
                self._head = self.commit
            else:
                self._head = checkout_head(self.repo, self.prefix, self.source)
        return self._head

    def repo_path(self, path: str | os.PathLike[str]) -> str:
        """A local file's path relative to the repository root (as diagnostics name it)."""
        assert self.root is not None
        rel = Path(path).resolve().relative_to(self.root).as_posix()
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rebase(self, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
        """Diagnostics with org-relative files renamed relative to the repository root."""
        return rebased(diagnostics, self.prefix)

    def at(self, ref: str) -> tuple[FileSource, str]:
        """The same org root at another ref of the same repository (for `plan --base`), and its commit id."""
        if self.repo is None:
            raise OrgUnavailable(f"{self.where} is not inside a git repository, so {ref!r} cannot be read")
        commit = _resolve(self.repo, ref, self.fetch_branch)
        tree = CommitTreeSource(self.repo, commit, root=self.prefix)
        return OrgFiles(tree, self.source.exclude), str(commit.id)

    def close(self) -> None:
        self.cleanup.close()


def _resolve(repo: pygit2.Repository, ref: str, fetch_branch: Callable[[str], object] | None) -> pygit2.Commit:
    candidates = [ref]
    if fetch_branch is not None:  # a remote: its branches live under refs/remotes/origin/ in the cache
        name = ref.removeprefix("origin/")
        with contextlib.suppress(Exception):  # not a branch name: maybe a commit id already fetched
            fetch_branch(name)
        candidates = [f"refs/remotes/origin/{name}", ref]
    for candidate in candidates:
        try:
            return repo.revparse_single(candidate).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            continue
    raise OrgUnavailable(f"{ref!r} is not a commit of {repo.workdir or repo.path}")


# Local folders ----------------------------------------------------------------------------------------


def _discover(where: Path) -> pygit2.Repository | None:
    """The git repository holding `where`, if any (honours GIT_CEILING_DIRECTORIES, like git)."""
    try:
        found = discover_repository(where, os.environ.get("GIT_CEILING_DIRECTORIES", ""))
        if found is None:
            return None
        repo = pygit2.Repository(found)
    except (pygit2.GitError, OSError, ValueError):
        return None  # not a repository we may read (e.g. owned by another user): paths stay org-relative
    return None if repo.is_bare or not repo.workdir else repo


def local(root: str | os.PathLike[str], settings: Settings, settings_file: Path | None) -> OrgSource:
    """The org in a local folder; inside a git checkout, paths and head come from the checkout."""
    path = Path(root)
    if not path.is_dir():
        raise OrgUnavailable(f"{root}: not a directory")
    resolved = path.resolve()
    files = OrgFiles(DirectorySource(resolved), not_org_documents(resolved, settings.state_dir, settings_file))
    repo = _discover(resolved)
    if repo is None:
        return OrgSource(files, "", where=str(root), root=resolved)
    top = Path(repo.workdir).resolve()
    prefix = resolved.relative_to(top).as_posix() if resolved != top else ""
    return OrgSource(files, prefix, where=str(root), root=resolved, repo=repo)


def checkout_head(repo: pygit2.Repository, prefix: str, files: OrgFiles) -> str:
    """HEAD's commit id, with `+dirty` when the org's files (as read) differ from that commit's."""
    try:
        commit = repo.head.peel(pygit2.Commit)
    except (pygit2.GitError, KeyError, ValueError):
        return ""  # no commit yet: the content digest says what was read
    committed = OrgFiles(CommitTreeSource(repo, commit, root=prefix), files.exclude)
    same = {(f.path, f.blob_id) for f in files.files()} == {(f.path, f.blob_id) for f in committed.files()}
    return str(commit.id) if same else f"{commit.id}+dirty"


# Remotes ----------------------------------------------------------------------------------------------


def remote(settings: Settings, path: str) -> OrgSource:
    """The org at the tip of `source.branch` of `source.url` (from --repo/--branch), read from the commit tree
    into a throw-away cache: no working tree, nothing left behind."""
    from gitops.settings.load import SecretError
    from gitops.source.git import GitAuth, GitSource, GitSourceError

    cleanup = contextlib.ExitStack()
    cache = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="hiclaw-gitops-read-"))) / "git"
    src = settings.source
    try:
        git = GitSource(src.url, src.branch, cache, auth=GitAuth.from_settings(src), depth=src.depth or 1,
                        timeout=src.timeout, known_hosts=src.ssh_known_hosts)
        tip = git.fetch()
        commit = git.commit(tip)
    except (GitSourceError, SecretError) as exc:
        cleanup.close()
        raise OrgUnavailable(exc.diagnostic.message, [exc.diagnostic]) from None
    prefix = path.strip("/")
    exclude = list(RESERVED_NAMES)
    status = settings.status.path.strip("/")  # status kept on the org branch is not part of the org
    if status and (not prefix or status.startswith(prefix + "/")):
        exclude.append(status.removeprefix(prefix + "/") if prefix else status)
    tree = CommitTreeSource(git.repo, commit, root=prefix)
    return OrgSource(OrgFiles(tree, exclude), prefix, where=f"{git.label}:{prefix or '.'}", repo=git.repo,
               commit=str(commit.id), fetch_branch=git.fetch_branch, cleanup=cleanup)
