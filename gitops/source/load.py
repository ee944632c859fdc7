"""Load: read every org file of a source into parsed documents, reusing earlier parses by content id."""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitops.diagnostics import Diagnostic
from gitops.gcpause import paused_gc
from gitops.source.files import FileSource, SourceFile
from gitops.source.yamlparse import MAX_FILE_BYTES, Locator, ParsedDocument, decode, parse

CACHE_FORMAT = 2


class ParseCache:
    """Parsed documents keyed by git blob id, kept in one pickle file so they survive restarts.

    Cached data is shared between runs in one process: nothing downstream may mutate parsed documents.
    Only clean parses are cached; a file with problems is parsed again so its diagnostics stay exact.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, list[tuple[int, int, Any]]] = {}
        self._clean: set[str] = set()  # blob ids whose documents passed the per-document checks
        self._dirty = False
        self.hits = 0
        self.misses = 0
        stored = read_pickle(path)  # a damaged cache is only a slower run
        if isinstance(stored, tuple) and len(stored) == 3 and stored[0] == CACHE_FORMAT:
            self._entries, self._clean = stored[1], stored[2]

    def get(self, blob_id: str) -> list[tuple[int, int, Any]] | None:
        entry = self._entries.get(blob_id)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, blob_id: str, docs: list[ParsedDocument]) -> None:
        self._entries[blob_id] = [(d.index, d.line, d.data) for d in docs]
        self._dirty = True

    def is_clean(self, blob_id: str) -> bool:
        return blob_id in self._clean

    def mark_clean(self, blob_id: str) -> None:
        if blob_id not in self._clean:
            self._clean.add(blob_id)
            self._dirty = True

    def retain(self, blob_ids: set[str]) -> None:
        """Forget entries no longer referenced, so the cache does not grow without bound."""
        stale = self._entries.keys() - blob_ids
        if stale:
            for key in stale:
                del self._entries[key]
            self._dirty = True
        self._clean &= blob_ids

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        write_pickle(self.path, (CACHE_FORMAT, self._entries, self._clean))
        self._dirty = False


def read_pickle(path: Path | None) -> Any:
    """A cache file's content, or None when there is none or it cannot be read back (damaged, foreign)."""
    if path is None or not path.is_file():
        return None
    try:
        with path.open("rb") as fh, paused_gc():
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
        return None


def write_pickle(path: Path, data: Any) -> None:
    """Replace a cache file atomically: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh, paused_gc():
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(slots=True)
class LoadResult:
    """What loading produced: documents, problems, and what is needed to locate lines later."""

    source_label: str
    documents: list[ParsedDocument]
    diagnostics: list[Diagnostic]
    files: dict[str, SourceFile] = field(default_factory=dict)

    def locator(self) -> Locator:
        texts: dict[str, str] = {}
        for path, f in self.files.items():
            text, _ = decode(path, f.read(), max_bytes=1 << 62)
            if text is not None:
                texts[path] = text
        return Locator(texts)


def load(source: FileSource, cache: ParseCache | None = None, max_bytes: int = MAX_FILE_BYTES) -> LoadResult:
    """Parse every YAML file of the source; every problem is reported, none stops the others."""
    documents: list[ParsedDocument] = []
    diagnostics: list[Diagnostic] = []
    files: dict[str, SourceFile] = {}
    for f in source.files():
        files[f.path] = f
        cached = cache.get(f.blob_id) if cache is not None else None
        if cached is not None:
            documents.extend(ParsedDocument(f.path, i, line, data) for i, line, data in cached)
            continue
        docs, problems = parse(f.path, f.read(), max_bytes)
        documents.extend(docs)
        diagnostics.extend(problems)
        if cache is not None and not problems:
            cache.put(f.blob_id, docs)
    diagnostics.extend(source.problems())
    return LoadResult(source.label, documents, diagnostics, files)
