"""State store: SQLite in the state directory — inventory of applied objects, org snapshot, journal.

The inventory is the only list prune trusts: an object is deleted only if this reconciler recorded it.
The journal records each apply step before and after it runs, so a killed run is resumed by the next.
The file is created with mode 0600; it holds no secret values (see gitops.apply.secrets for those).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitops.objects import ManagedObject, RecordedObject, canonical_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory (
    key TEXT PRIMARY KEY,
    object TEXT NOT NULL,
    hash TEXT NOT NULL,
    commit_id TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    action TEXT NOT NULL,
    phase TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_run ON journal(run_id);
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    run_id: str
    key: str
    action: str
    phase: str  # start | done | failed
    message: str
    at: float


class StateStore:
    """One SQLite database per state directory. Safe for one writer (the daemon holds the directory lock)."""

    FILE = "state.db"

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / self.FILE
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(inventory)")}
        if "outputs" not in columns:  # a state directory from before outputs were kept
            self._db.execute("ALTER TABLE inventory ADD COLUMN outputs TEXT NOT NULL DEFAULT '{}'")

    @classmethod
    def exists(cls, state_dir: str | os.PathLike[str]) -> bool:
        return (Path(state_dir) / cls.FILE).is_file()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # Inventory -----------------------------------------------------------------------------------------

    def inventory(self) -> dict[str, ManagedObject]:
        """Every recorded object, each with the hash recorded with it (its spec's hash: not computed again) and
        its spec decoded only when something reads it (`RecordedObject`)."""
        rows = self._db.execute("SELECT object, hash FROM inventory ORDER BY key")  # one row in memory at a time
        shared: dict[Any, Any] = {}
        return {o.key: o for o in (recorded(text, h, shared) for text, h in rows)}

    def inventory_keys(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT key FROM inventory ORDER BY key")]

    def record(self, obj: ManagedObject, commit_id: str = "", outputs: Mapping[str, Any] | None = None) -> None:
        """Remember that `obj` now exists as specified (after a create/update/replace). `outputs` are the
        server-assigned identifiers and fingerprint an apply returned (never a secret); without them, those
        recorded earlier are kept."""
        if outputs is None:
            self._db.execute(
                """INSERT INTO inventory(key, object, hash, commit_id, updated) VALUES (?,?,?,?,?)
                   ON CONFLICT(key) DO UPDATE SET object = excluded.object, hash = excluded.hash,
                   commit_id = excluded.commit_id, updated = excluded.updated""",
                (obj.key, canonical_json(obj.to_dict()), obj.hash, commit_id, time.time()),
            )
            return
        self._db.execute(
            "INSERT OR REPLACE INTO inventory(key, object, hash, commit_id, updated, outputs) VALUES (?,?,?,?,?,?)",
            (obj.key, canonical_json(obj.to_dict()), obj.hash, commit_id, time.time(), canonical_json(outputs)),
        )

    def outputs(self) -> dict[str, dict[str, Any]]:
        """Recorded outputs (`ids`, `fingerprint`) by key, for objects that have any."""
        rows = self._db.execute("SELECT key, outputs FROM inventory WHERE outputs != '{}' ORDER BY key")
        return {key: json.loads(text) for key, text in rows}

    def forget(self, key: str) -> None:
        """Drop an object from the inventory (after a verified delete)."""
        self._db.execute("DELETE FROM inventory WHERE key = ?", (key,))

    # Snapshots (org chart and access report of the last applied commit) --------------------------------

    def put_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)", (key, canonical_json(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # Journal -------------------------------------------------------------------------------------------

    def journal(self, run_id: str, key: str, action: str, phase: str, message: str = "") -> None:
        self._db.execute(
            "INSERT INTO journal(run_id, key, action, phase, message, at) VALUES (?,?,?,?,?,?)",
            (run_id, key, action, phase, message, time.time()),
        )

    def journal_entries(self, run_id: str | None = None) -> list[JournalEntry]:
        query = "SELECT run_id, key, action, phase, message, at FROM journal"
        args: tuple[Any, ...] = ()
        if run_id is not None:
            query += " WHERE run_id = ?"
            args = (run_id,)
        return [JournalEntry(*row) for row in self._db.execute(query + " ORDER BY id", args)]

    def unfinished(self) -> list[JournalEntry]:
        """Steps that started and never finished: a run was killed while they were in flight."""
        rows = self._db.execute(
            """SELECT run_id, key, action, phase, message, at FROM journal j
               WHERE phase = 'start' AND NOT EXISTS (
                   SELECT 1 FROM journal k WHERE k.run_id = j.run_id AND k.key = j.key AND k.id > j.id)
               ORDER BY id"""
        ).fetchall()
        return [JournalEntry(*r) for r in rows]


def recorded(text: str, hash: str, shared: dict[Any, Any] | None = None) -> ManagedObject:
    """An inventory row as an object, its spec left as JSON text. A row is `canonical_json(obj.to_dict())`:
    keys sorted, no spaces, and every key before `spec` holds a string, a flag or a list of strings, in which a
    quote is always escaped, so the first `,"spec":` starts the spec; `type` is the last key, so the last
    `,"type":` ends it. A row of any other shape is decoded whole. `shared`: equal types, owners and dependency
    lists of earlier rows, held once (decoded JSON repeats each as a new value)."""
    start, end = text.find(',"spec":'), text.rfind(',"type":')
    if start == -1 or end < start or not text.endswith("}"):
        return ManagedObject.from_dict(json.loads(text), hash)
    data = json.loads(text[:start] + text[end:])
    if shared is not None:
        data["depends_on"] = tuple(data.get("depends_on", ()))
        for name in ("type", "owner", "depends_on"):
            data[name] = shared.setdefault(data[name], data[name])
    return RecordedObject(data, text[start + len(',"spec":'):end], hash)


def org_snapshot(resources: Iterable[Any]) -> dict[str, Mapping[str, Any]]:
    """`Kind/name` → spec, the shape plan summaries compare."""
    return {r.ref: r.spec for r in resources}
