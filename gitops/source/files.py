"""Where org-chart files come from: one small interface over a directory or a git commit tree.

A `FileSource` lists the candidate YAML files under the org root (after `.hiclawignore`) with a content
id, so the loader can reuse parsed documents by id. Git commit trees implement the same interface in
`gitops.source.trees`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pathspec

from gitops.diagnostics import Diagnostic, diag

IGNORE_FILE = ".hiclawignore"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A candidate file: repo-relative POSIX path, a content id (git blob id) and a way to read it."""

    path: str
    blob_id: str
    read: Callable[[], bytes] = field(compare=False, repr=False)


class FileSource(Protocol):
    """Anything the loader can read an org chart from."""

    @property
    def label(self) -> str:
        """Human-readable origin: a directory path or a commit id."""
        ...

    def files(self) -> Iterator[SourceFile]:
        """Every YAML file under the root that is not ignored, in path order."""
        ...

    def problems(self) -> list[Diagnostic]:
        """Diagnostics found while listing (symlink escapes, unreadable entries); valid after files()."""
        ...

    def escapes(self, relative: str) -> bool:
        """Whether a repo-relative path (e.g. a `file://` package) resolves outside the repository."""
        ...


def git_blob_id(content: bytes) -> str:
    """The id git gives these bytes as a blob, so directory and commit sources share cache entries."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def ignore_spec(text: str | None) -> pathspec.GitIgnoreSpec | None:
    if not text:
        return None
    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())  # git's own matching rules


def is_yaml(name: str) -> bool:
    return name.endswith(YAML_SUFFIXES)


class DirectorySource:
    """Org files from a directory on disk; symlinks are followed only while they stay inside the root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._problems: list[Diagnostic] = []

    @property
    def label(self) -> str:
        return str(self.root)

    def problems(self) -> list[Diagnostic]:
        return list(self._problems)

    def _ignored(self) -> pathspec.GitIgnoreSpec | None:
        path = self.root / IGNORE_FILE
        return ignore_spec(path.read_text("utf-8", errors="replace")) if path.is_file() else None

    def files(self) -> Iterator[SourceFile]:
        self._problems = []
        ignored = self._ignored()
        found: list[SourceFile] = []
        self._walk(self.root, "", ignored, found)
        found.sort(key=lambda f: f.path)
        yield from found

    def _walk(
        self, directory: Path, prefix: str, ignored: pathspec.GitIgnoreSpec | None, out: list[SourceFile]
    ) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            self._problems.append(
                diag(
                    "Y109",
                    f"cannot list directory: {exc.strerror}",
                    file=prefix or ".",
                    hint="check the directory's permissions, or list it in .hiclawignore",
                )
            )
            return
        for entry in entries:
            rel = prefix + entry.name
            if entry.name == ".git":
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if ignored is not None and ignored.match_file(rel + ("/" if is_dir else "")):
                continue
            if entry.is_symlink():
                try:
                    target = Path(entry.path).resolve()
                except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
                    if is_yaml(entry.name):
                        self._problems.append(
                            diag(
                                "Y109",
                                "cannot read file: its symbolic links form a loop",
                                file=rel,
                                hint="point the link at a real file, or remove it",
                            )
                        )
                    continue
                if not target.is_relative_to(self.root):
                    if entry.is_dir() or is_yaml(entry.name):
                        self._problems.append(
                            diag(
                                "Y108",
                                f"symbolic link points outside the repository (to {target})",
                                file=rel,
                                hint="copy the file into the repository instead of linking to it",
                            )
                        )
                    continue
                if entry.is_dir():
                    continue  # an in-repo directory link would list the same files twice
                if is_yaml(entry.name) and not target.exists():
                    self._problems.append(
                        diag(
                            "Y109",
                            "cannot read file: its symbolic link points to a missing file",
                            file=rel,
                            hint="point the link at an existing file, or remove it",
                        )
                    )
                    continue
            if is_dir:
                self._walk(Path(entry.path), rel + "/", ignored, out)
            elif is_yaml(entry.name) and entry.is_file():
                self._add(Path(entry.path), rel, out)

    def _add(self, path: Path, rel: str, out: list[SourceFile]) -> None:
        try:
            content = path.read_bytes()
        except OSError as exc:
            self._problems.append(
                diag(
                    "Y109",
                    f"cannot read file: {exc.strerror}",
                    file=rel,
                    hint="check the file's permissions, or list it in .hiclawignore",
                )
            )
            return
        out.append(SourceFile(rel, git_blob_id(content), lambda c=content: c))  # type: ignore[misc]

    def escapes(self, relative: str) -> bool:
        try:
            return not (self.root / relative).resolve().is_relative_to(self.root)
        except (OSError, RuntimeError):  # a symlink loop: cannot be shown to stay inside, so refuse it
            return True
