"""Compile cache: unit results (gitops.compile.units) by the digest of their scope, kept in one file.

An entry is the result of compiling one unit — the Manager, a standalone Worker or a Team — and its key is a
digest of everything that result depends on (the unit's resource, the humans and accounts it sees, the
settings and the compiler's source), so an entry can only be reused for exactly the inputs that made it.
Results are shared, immutable values: nothing may mutate what `get` returns.

`save` keeps the entries used since the cache was opened or last saved and drops the rest, so the cache holds
one org chart's units (two, for a plan between two commits) and never grows without bound.
"""

from __future__ import annotations

from pathlib import Path

from gitops.compile.units import UnitResult, code_digest
from gitops.source.load import read_pickle, write_pickle

CACHE_FORMAT = 1


class CompileCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, UnitResult] = {}
        self._used: set[str] = set()
        self._dirty = False
        self.hits = 0
        self.misses = 0
        stored = read_pickle(path)  # a damaged or foreign cache is only a slower run
        if isinstance(stored, tuple) and len(stored) == 3 and stored[:2] == (CACHE_FORMAT, code_digest()):
            self._entries = stored[2]

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> UnitResult | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
            self._used.add(key)
        return found

    def put(self, key: str, result: UnitResult) -> None:
        self._entries[key] = result
        self._used.add(key)
        self._dirty = True

    def compact(self) -> None:
        """Forget the entries not used since the cache was opened or last compacted."""
        stale = self._entries.keys() - self._used
        if stale:
            for key in stale:
                del self._entries[key]
            self._dirty = True
        self._used = set()

    def save(self) -> None:
        """Compact, then write the file (atomically) if anything changed."""
        self.compact()
        if self.path is None or not self._dirty:
            return
        write_pickle(self.path, (CACHE_FORMAT, code_digest(), self._entries))
        self._dirty = False
