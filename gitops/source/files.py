"""Where org-chart files come from: one small interface over a directory or a git commit tree.

A `FileSource` lists the candidate YAML files under the org root (after `.hiclawignore`) with a content
id, so the loader can reuse parsed documents by id. Git commit trees implement the same interface in
`gitops.source.trees`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pathspec

from gitops.diagnostics import Diagnostic, diag
from gitops.source.yamlparse import MAX_FILE_BYTES

IGNORE_FILE = ".hiclawignore"
YAML_SUFFIXES = (".yaml", ".yml")
MAX_IGNORE_BYTES = 1 << 20  # a .hiclawignore is a few lines
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


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


def read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """A regular file's bytes, at most `max_bytes + 1` of them (so a caller can tell it is too large).

    Never blocks and never reads without bound: a FIFO, device, socket or directory is refused with an
    OSError whose strerror says what it is, before anything is read (the open itself does not wait for a
    FIFO's writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = next((word for test, word in _FILE_KINDS if test(mode)), "not a regular file")
            raise OSError(errno.EINVAL, f"it is {what}, not a regular file")
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def parse_ignore(text: str | None, file: str = IGNORE_FILE) -> tuple[pathspec.GitIgnoreSpec | None, list[Diagnostic]]:
    """`.hiclawignore` with git's own matching rules; a line that is not a valid pattern is reported (Y113,
    at its line) and not used, the others still apply."""
    if not text:
        return None, []
    good: list[str] = []
    problems: list[Diagnostic] = []
    for number, raw in enumerate(text.split("\n"), 1):  # numbered as an editor shows them
        line = raw.removesuffix("\r")
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except (ValueError, re.error) as exc:
            reason = (
                f"not a valid pattern ({str(exc).split(' at position', 1)[0]})"
                if isinstance(exc, re.error)
                else "not a valid pattern"
            )
            problems.append(
                diag(
                    "Y113",
                    f"`{line[:80]}` is {reason}",
                    file=file,
                    line=number,
                    column=1,
                    hint=_ignore_hint(line),
                )
            )
            continue
        good.append(line)
    return (pathspec.GitIgnoreSpec.from_lines(good) if good else None), problems


def _ignore_hint(line: str) -> str:
    if line.strip() == "!":
        return "`!` negates the pattern that follows it: write `!path`, or remove the line"
    if line.endswith("\\"):
        return "a trailing `\\` escapes nothing: remove it, or escape a trailing space as `\\ `"
    if "[" in line:
        return "a range is written low to high, e.g. [a-z]; a literal `[` is written `\\[`"
    return "write a git-style pattern (see gitignore(5)), or remove the line"


def ignore_spec(text: str | None) -> pathspec.GitIgnoreSpec | None:
    """The valid patterns of a `.hiclawignore` (see parse_ignore for the problems of the others)."""
    return parse_ignore(text)[0]


def is_yaml(name: str) -> bool:
    return name.endswith(YAML_SUFFIXES)


class DirectorySource:
    """Org files from a directory on disk; symlinks are followed only while they stay inside the root."""

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes  # a larger file is reported (Y104) without being read
        self._problems: list[Diagnostic] = []

    @property
    def label(self) -> str:
        return str(self.root)

    def problems(self) -> list[Diagnostic]:
        return list(self._problems)

    def _ignored(self) -> pathspec.GitIgnoreSpec | None:
        path = self.root / IGNORE_FILE
        if not os.path.lexists(path):
            return None
        try:
            if not path.resolve().is_relative_to(self.root):
                self._problems.append(
                    diag(
                        "Y108",
                        "symbolic link points outside the repository; it is not read",
                        file=IGNORE_FILE,
                        hint="copy the file into the repository instead of linking to it",
                    )
                )
                return None
            content = read_regular(path, MAX_IGNORE_BYTES)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop before Python 3.13
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "its symbolic links form a loop"
            self._problems.append(
                diag(
                    "Y109",
                    f"cannot read file: {reason}",
                    file=IGNORE_FILE,
                    hint="make .hiclawignore a plain text file of patterns, or remove it",
                )
            )
            return None
        if len(content) > MAX_IGNORE_BYTES:
            self._problems.append(
                diag(
                    "Y104",
                    f"file is over the {MAX_IGNORE_BYTES:,}-byte cap",
                    file=IGNORE_FILE,
                    hint="a .hiclawignore is a few lines of patterns",
                )
            )
            return None
        spec, problems = parse_ignore(content.decode("utf-8", errors="replace"))
        self._problems.extend(problems)
        return spec

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
            elif is_yaml(entry.name):
                self._add(Path(entry.path), rel, out)

    def _add(self, path: Path, rel: str, out: list[SourceFile]) -> None:
        """Read a YAML file: a regular file only (a FIFO or device named *.yaml is reported, never waited on or
        read without end), at most `max_bytes` of it."""
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                self._problems.append(
                    diag(
                        "Y104",
                        f"file is {size:,} bytes, over the {self.max_bytes:,}-byte cap",
                        file=rel,
                        hint="split it into smaller files; an org-chart file is normally a few kilobytes",
                    )
                )
                return
            content = read_regular(path, self.max_bytes)
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
        except (OSError, RuntimeError, ValueError):  # a symlink loop or a NUL byte: cannot be shown to stay inside
            return True
