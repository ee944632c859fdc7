"""What is not an org document, and a FileSource that leaves it out.

The settings file in use, any `hiclaw-gitops.yaml` (or `.yml`) at the org root, and the state directory when
it lies inside the org are never read as org documents — by the commands and by the daemon alike.
`.hiclawignore` is not YAML and is never read as one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from gitops.diagnostics import Diagnostic
from gitops.settings.discovery import RESERVED_NAMES
from gitops.source.files import FileSource, SourceFile

__all__ = ["RESERVED_NAMES", "OrgFiles", "not_org_documents"]


class OrgFiles:
    """A FileSource that lists its inner source once and leaves out files that are not org documents.

    Listing once lets a command compare the listing with a commit (is the checkout dirty?) and then load it
    without reading the files again.
    """

    def __init__(self, inner: FileSource, exclude: Iterable[str] = ()) -> None:
        self.inner = inner
        self.exclude = tuple(sorted({e.strip("/") for e in exclude if e.strip("/")}))
        self._listed: list[SourceFile] | None = None

    @property
    def label(self) -> str:
        return self.inner.label

    def excluded(self, path: str) -> bool:
        return any(path == e or path.startswith(e + "/") for e in self.exclude)

    def files(self) -> Iterator[SourceFile]:
        if self._listed is None:
            self._listed = [f for f in self.inner.files() if not self.excluded(f.path)]
        yield from self._listed

    def problems(self) -> list[Diagnostic]:
        return [d for d in self.inner.problems() if not (d.file and self.excluded(d.file))]

    def escapes(self, relative: str) -> bool:
        return self.inner.escapes(relative)


def not_org_documents(root: Path, state_dir: str, settings_file: Path | None) -> list[str]:
    """What to leave out of the org at `root` (a resolved folder), as paths relative to it."""
    out = list(RESERVED_NAMES)
    for candidate in (settings_file, Path(state_dir) if state_dir else None):
        if candidate is None:
            continue
        full = candidate.resolve()
        if full != root and full.is_relative_to(root):
            out.append(full.relative_to(root).as_posix())
    return out
