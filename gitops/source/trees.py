"""Reading a git commit tree as a FileSource: YAML files under the org root, `.hiclawignore`, symlinks, no checkout.

Org files are read from blobs (their ids are git's own, so the parse cache is shared with directory sources).
Also here: the org at a ref of a local repository (`ref_source`, for `plan --base`) and tree comparison outside
a path (`same_tree_outside`, to tell our own status commits from org changes).
"""

from __future__ import annotations

import ctypes
import os
import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pathspec
import pygit2
from pygit2.enums import FileMode

from gitops.diagnostics import Diagnostic, diag
from gitops.source.files import IGNORE_FILE, MAX_IGNORE_BYTES, SourceFile, is_yaml, parse_ignore

MAX_LINK_HOPS = 40


class CommitTreeSource:
    """The FileSource of one commit: YAML files under the org root, `.hiclawignore` applied, no checkout."""

    def __init__(self, repo: pygit2.Repository, commit: pygit2.Commit, root: str = "",
                 exclude: Sequence[str] = ()) -> None:
        self.repo = repo
        self.commit = commit
        self.root = root.strip("/")
        self.exclude = tuple(e.strip("/") for e in exclude if e.strip("/"))
        self._problems: list[Diagnostic] = []

    @property
    def label(self) -> str:
        return str(self.commit.id)

    def problems(self) -> list[Diagnostic]:
        return list(self._problems)

    def _root_tree(self) -> pygit2.Tree | None:
        if not self.root:
            return self.commit.tree
        try:
            obj = self.commit.tree[self.root]
        except KeyError:
            return None
        tree = self.repo[obj.id]
        return tree if isinstance(tree, pygit2.Tree) else None

    def files(self) -> Iterator[SourceFile]:
        self._problems = []
        tree = self._root_tree()
        if tree is None:
            self._problems.append(
                diag("G609", f"the org path `{self.root}` is not a directory in commit {str(self.commit.id)[:12]}",
                     hint="check source.path / --path")
            )
            return
        ignored = None
        try:
            ignore_entry = tree[IGNORE_FILE]
            blob = self.repo[ignore_entry.id]
            if isinstance(blob, pygit2.Blob):
                ignored, problems = parse_ignore(blob.data[: MAX_IGNORE_BYTES + 1].decode("utf-8", errors="replace"))
                self._problems.extend(problems)
        except KeyError:
            pass
        found: list[SourceFile] = []
        self._walk(tree, "", ignored, found)
        found.sort(key=lambda f: f.path)
        yield from found

    def _repo_path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    def _walk(
        self, tree: pygit2.Tree, prefix: str, ignored: pathspec.PathSpec[Any] | None, out: list[SourceFile]
    ) -> None:
        for entry in tree:
            name = entry.name or ""
            rel = prefix + name
            full = self._repo_path(rel)
            if any(full == e or full.startswith(e + "/") for e in self.exclude):
                continue
            is_dir = entry.type_str == "tree"
            if ignored is not None and ignored.match_file(rel + ("/" if is_dir else "")):
                continue
            if entry.filemode == FileMode.LINK:
                self._link(entry, rel, out)
            elif is_dir:
                sub = self.repo[entry.id]
                if isinstance(sub, pygit2.Tree):
                    self._walk(sub, rel + "/", ignored, out)
            elif entry.type_str == "blob" and is_yaml(name):
                out.append(self._file(rel, entry.id))
            # submodules (type "commit") are never followed

    def _file(self, rel: str, oid: pygit2.Oid) -> SourceFile:
        repo = self.repo

        def read() -> bytes:
            blob = repo[oid]
            return blob.data if isinstance(blob, pygit2.Blob) else b""

        return SourceFile(rel, str(oid), read)

    def _link(self, entry: pygit2.Object, rel: str, out: list[SourceFile]) -> None:
        name = entry.name or ""
        blob = self.repo[entry.id]
        target = blob.data.decode("utf-8", errors="replace") if isinstance(blob, pygit2.Blob) else ""
        full = self._repo_path(rel)
        resolved = self._resolve(full.split("/"))
        maybe_relevant = is_yaml(name) or "." not in name
        if resolved is None:
            if maybe_relevant:
                self._problems.append(
                    diag("Y108", f"symbolic link points outside the repository (to {target})", file=rel,
                         hint="copy the file into the repository instead of linking to it")
                )
            return
        obj = self._lookup(resolved)
        if obj is None:
            if is_yaml(name):
                self._problems.append(
                    diag("Y109", "cannot read file: its symbolic link points to a missing file", file=rel,
                         hint="point the link at an existing file, or remove it")
                )
            return
        if isinstance(obj, pygit2.Blob) and is_yaml(name):
            out.append(self._file(rel, obj.id))
        # a link to an in-repo directory would list the same files twice: skip it, as DirectorySource does

    def _lookup(self, parts: Sequence[str]) -> pygit2.Object | None:
        obj: pygit2.Object = self.commit.tree
        for part in parts:
            if not isinstance(obj, pygit2.Tree):
                return None
            try:
                obj = self.repo[obj[part].id]
            except KeyError:
                return None
        return obj

    def _resolve(self, parts: Sequence[str]) -> list[str] | None:
        """Repo-relative components of a path with every symlink followed; None when it leaves the repo."""
        pending = [p for p in parts if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    return None
                done.pop()
                continue
            entry = self._entry_at([*done, part])
            if entry is not None and entry.filemode == FileMode.LINK:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return None
                blob = self.repo[entry.id]
                target = blob.data.decode("utf-8", errors="replace") if isinstance(blob, pygit2.Blob) else ""
                if target.startswith("/"):
                    return None
                pending = target.split("/") + pending
                continue
            done.append(part)
        return done

    def _entry_at(self, parts: Sequence[str]) -> pygit2.Object | None:
        tree: pygit2.Object = self.commit.tree
        for i, part in enumerate(parts):
            if not isinstance(tree, pygit2.Tree):
                return None
            try:
                entry = tree[part]
            except KeyError:
                return None
            if i == len(parts) - 1:
                return entry
            if entry.filemode == FileMode.LINK:
                return None  # callers resolve links component by component
            tree = self.repo[entry.id]
        return None

    def escapes(self, relative: str) -> bool:
        full = self._repo_path(posixpath.normpath(relative))
        return self._resolve(full.split("/")) is None


def discover_repository(where: str | os.PathLike[str], ceiling: str = "") -> str | None:
    """The git directory of the repository holding `where` (searching upwards, stopping at the `ceiling`
    directories, `os.pathsep`-separated), or None.

    pygit2 1.21's `discover_repository` returns None without taking a reference to it, so every call that
    finds nothing lowers None's reference count by one; a long-lived process (the daemon, the fuzzer) would
    eventually abort with "deallocating None". The missing reference is given back here (one more reference
    to None is harmless should a later pygit2 fix this)."""
    found = pygit2.discover_repository(str(where), False, ceiling)
    if found is None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(None))
        return None
    return str(found)


def ref_source(directory: str | os.PathLike[str], ref: str) -> tuple[CommitTreeSource, str]:
    """The org at `ref` in the git repository containing `directory`, read from the commit tree.

    The org root inside the commit is `directory`'s path relative to the repository's work tree, so
    `plan example-org --base origin/main` compares example-org/ with example-org/ at origin/main.
    Raises LookupError when there is no repository or the ref does not resolve.
    """
    where = Path(directory).resolve()
    found = discover_repository(where)
    if found is None:
        raise LookupError(f"{where} is not inside a git repository")
    repo = pygit2.Repository(found)
    try:
        commit = repo.revparse_single(ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise LookupError(f"{ref!r} is not a commit of {repo.workdir or repo.path}") from exc
    workdir = Path(repo.workdir or found).resolve()
    root = where.relative_to(workdir).as_posix() if where != workdir else ""
    return CommitTreeSource(repo, commit, root=root), str(commit.id)


def same_tree_outside(repo: pygit2.Repository, a: pygit2.Tree | None, b: pygit2.Tree | None, path: str) -> bool:
    """Whether two trees are equal once the subtree at `path` is left out of both (None: an empty tree)."""
    head, _, rest = path.strip("/").partition("/")
    names = {e.name for e in (a or ()) if e.name} | {e.name for e in (b or ()) if e.name}
    for name in names:
        ea, eb = _entry(a, name), _entry(b, name)
        if name == head:
            if not rest:
                continue
            ta, tb = _as_tree(repo, ea), _as_tree(repo, eb)
            if (ea is not None and ta is None) or (eb is not None and tb is None):
                if (ea.id if ea else None) != (eb.id if eb else None):
                    return False  # a file where the status directory's parent should be
                continue
            if not same_tree_outside(repo, ta, tb, rest):
                return False
        elif ea is None or eb is None or ea.id != eb.id or ea.filemode != eb.filemode:
            return False
    return True


def _entry(tree: pygit2.Tree | None, name: str) -> pygit2.Object | None:
    if tree is None:
        return None
    try:
        return tree[name]
    except KeyError:
        return None


def _as_tree(repo: pygit2.Repository, entry: pygit2.Object | None) -> pygit2.Tree | None:
    if entry is None or entry.type_str != "tree":
        return None
    obj = repo[entry.id]
    return obj if isinstance(obj, pygit2.Tree) else None
