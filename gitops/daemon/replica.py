"""State replication between daemon replicas that share no disk: the leader publishes snapshots of its state
directory, and a replica that becomes leader restores the newest one before its first pass.

Each replica keeps its state directory on a volume of its own (SQLite's WAL is not safe on a network file
system, so one shared volume is no answer). What must survive a failover is small and lives in three files:
`state.db` (inventory, journal, org snapshot), `loop.json` (last commit, escalations) and `chatops.json`. The
git cache, the parse cache and the lock are rebuilt; credentials are never here — they live in a shared secret
store (`secret_store.backend: kubernetes`), which is why replication requires it.

- **Snapshot**: `state.db` copied with SQLite's backup API (a consistent copy while a pass writes), the two
  JSON files as they are, packed into one deterministic gzip'd tar (same state, same bytes, same digest).
- **Publish** (the leader): after every poll whose pass changed one of the files (a stat of four files says
  so; the digest then skips a snapshot equal to the last one), at most every `replicate_interval` seconds
  during a long pass, and at shutdown. Generations are numbered; a `SnapshotStore` writes one completely
  before it removes older ones, so a write cut half-way leaves the previous generation readable.
- **Restore** (a new leader, before its first pass of each term): the newest complete generation, if it is
  newer than the one this directory last published or restored (`replica.json`). `state.db` is restored
  through the backup API into the live database, so the daemon's open connection sees it at once.

Writes are fenced twice: the store's own writes ask the Kubernetes fence, and every chunk asks whether this
is still the term the state was restored in — a replica that lost the lease and took it again after someone
else led restores first, and never publishes its stale state over theirs.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import logging
import os
import sqlite3
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gitops.daemon.leader import NotLeading, may_write
from gitops.daemon.loopstate import write_atomic
from gitops.providers.errors import PermanentError, TransientError

log = logging.getLogger("hiclaw_gitops.replica")

DATABASE = "state.db"
DOCUMENTS = ("loop.json", "chatops.json")  # replaced whole, atomically
DURABLE = (DATABASE, *DOCUMENTS)
MARK = "replica.json"  # this directory's own record of the generation it holds; never replicated
LIMIT = 256 * 1024 * 1024  # bytes a snapshot may unpack to (a corrupt or hostile blob stops here)
SNAPSHOTS = "backends.kubernetes_state:KubeStateSnapshots"  # imported only when replication is on


class SnapshotError(Exception):
    """A snapshot cannot be made, read or restored; the message says which and why (no state content)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    generation: int
    digest: str  # sha256 of the blob, hex
    blob: bytes


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the cluster holds: the newest complete generation, and the highest number any chunk carries
    (complete or not: the next generation is numbered above it)."""

    newest: Snapshot | None
    highest: int


class SnapshotStore(Protocol):
    """Where snapshots live (backends.kubernetes_state.KubeStateSnapshots)."""

    def load(self) -> Loaded: ...

    def save(self, generation: int, blob: bytes, digest: str, guard: Callable[[], bool]) -> None:
        """Write generation `generation` completely, then remove older ones. `guard()` is asked before every
        write; False stops the save with NotLeading (what is written so far is an incomplete generation)."""
        ...

    def close(self) -> None: ...


class Term(Protocol):
    """The leader election (gitops.daemon.leader.LeaderElector): acquisitions so far."""

    @property
    def term(self) -> int: ...


# Snapshots -------------------------------------------------------------------------------------------


def digest_of(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def make_snapshot(state_dir: Path) -> bytes:
    """The durable files of `state_dir` as one deterministic .tar.gz (absent files are left out)."""
    files: list[tuple[str, bytes]] = []
    database = state_dir / DATABASE
    if database.is_file():
        files.append((DATABASE, _database_copy(database)))
    for name in DOCUMENTS:
        try:
            files.append((name, (state_dir / name).read_bytes()))
        except FileNotFoundError:
            continue
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(packed.getvalue(), compresslevel=6, mtime=0)


def _database_copy(path: Path) -> bytes:
    """A consistent copy of a live SQLite database (the backup API), as bytes."""
    try:
        with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(":memory:")) as copy:
            source.backup(copy)
            return bytes(copy.serialize())
    except sqlite3.Error as exc:
        raise SnapshotError(f"cannot copy {path}: {exc}") from None


def unpack(blob: bytes) -> dict[str, bytes]:
    """The files of a snapshot: only the durable names, regular files, bounded in size."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as z:
            raw = z.read(LIMIT + 1)
        if len(raw) > LIMIT:
            raise SnapshotError(f"the snapshot unpacks to more than {LIMIT} bytes")
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar.getmembers():
                if member.name not in DURABLE or not member.isfile():
                    raise SnapshotError(f"the snapshot holds an unexpected entry {member.name!r}")
                data = tar.extractfile(member)
                files[member.name] = data.read() if data is not None else b""
        return files
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise SnapshotError(f"the snapshot cannot be unpacked: {exc}") from None


def restore_snapshot(state_dir: Path, blob: bytes) -> None:
    """Make `state_dir`'s durable files those of the snapshot. The database is restored through the backup API
    into the live file (connections open on it see the new content); documents are replaced atomically; a
    document the snapshot does not hold is removed."""
    files = unpack(blob)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if DATABASE in files:
        _restore_database(state_dir, files[DATABASE])
    for name in DOCUMENTS:
        target = state_dir / name
        if name not in files:
            target.unlink(missing_ok=True)
            continue
        write_atomic(target, files[name])


def _restore_database(state_dir: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".restore-", suffix=".db")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        target_path = state_dir / DATABASE
        with closing(sqlite3.connect(tmp)) as source:
            check = source.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise SnapshotError(f"the snapshot's database is damaged ({check[0] if check else 'no answer'})")
            if not target_path.exists():
                os.close(os.open(target_path, os.O_CREAT | os.O_WRONLY, 0o600))
            with closing(sqlite3.connect(target_path)) as target:
                target.execute("PRAGMA journal_mode=WAL")
                source.backup(target)
    except sqlite3.Error as exc:
        raise SnapshotError(f"cannot restore {state_dir / DATABASE}: {exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def fingerprint(state_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """A stat of every file a pass writes durable state to: what says "something may have changed"."""
    out = []
    for name in (DATABASE, DATABASE + "-wal", *DOCUMENTS):
        try:
            st = (state_dir / name).stat()
        except FileNotFoundError:
            continue
        out.append((name, st.st_mtime_ns, st.st_size))
    return tuple(out)


# The replica -----------------------------------------------------------------------------------------


class StateReplica:
    """Publishes this leader's state, and restores the cluster's when a term begins. Thread-safe."""

    def __init__(self, state_dir: str | os.PathLike[str], snapshots: SnapshotStore, election: Term, *,
                 interval: float = 30.0, on_restore: Callable[[], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.dir = Path(state_dir)
        self.snapshots = snapshots
        self.election = election
        self.interval = interval
        self.on_restore = on_restore
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._term: int | None = None  # the term this directory was brought up to date in
        self._next = 1  # the generation the next publish writes
        self._published = ""  # digest of the newest generation in the cluster
        self._seen: tuple[tuple[str, int, int], ...] | None = None  # fingerprint at the last publish or check
        self._last_publish = 0.0

    # The local mark ----------------------------------------------------------------------------------

    def local_generation(self) -> int:
        try:
            data = json.loads((self.dir / MARK).read_text("utf-8"))
            return int(data.get("generation", 0)) if isinstance(data, dict) else 0
        except (OSError, ValueError, TypeError):
            return 0

    def _mark(self, generation: int, digest: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.dir / MARK, json.dumps({"generation": generation, "digest": digest}).encode("utf-8"))

    # Restore -----------------------------------------------------------------------------------------

    def prepare(self) -> bool:
        """Before a pass: once per term, restore the cluster's newest generation if it is newer than ours.
        False (logged) when the cluster cannot be read or the snapshot not restored: do not pass yet."""
        with self._lock:
            term = self.election.term
            if term == self._term:
                return True
            try:
                loaded = self.snapshots.load()
                local = self.local_generation()
                newest = loaded.newest
                published = newest.digest if newest is not None and newest.generation >= local else ""
                if newest is not None and newest.generation > local:
                    restore_snapshot(self.dir, newest.blob)
                    self._mark(newest.generation, newest.digest)
                    # What the restored directory packs to now (a restored database is not byte for byte the
                    # copy it came from): the first publish of the term writes only what this leader changes.
                    published = digest_of(make_snapshot(self.dir))
                    log.info("state restored from the cluster", extra={"fields": {
                        "generation": newest.generation, "previous": local, "bytes": len(newest.blob)}})
                    if self.on_restore is not None:
                        self.on_restore()
                else:
                    log.info("state is current", extra={"fields": {
                        "generation": local, "cluster": newest.generation if newest else 0}})
            except (TransientError, PermanentError, SnapshotError) as exc:
                log.warning("state not restored; this replica does not reconcile until it is",
                            extra={"fields": {"error": str(exc)}})
                return False
            self._next = max(loaded.highest, local) + 1
            self._published = published
            self._seen = None  # the first check of the term compares content with the cluster's
            self._term = term
            return True

    def ready(self) -> bool:
        """Whether this directory is up to date for the current term (prepare has run in it): what may act on
        the state besides the loop — the chat listener — waits for this."""
        with self._lock:
            return self._term is not None and self._term == self.election.term

    # Publish -----------------------------------------------------------------------------------------

    def publish(self) -> bool:
        """Write a new generation if the state changed since the last one; whether one was written."""
        with self._lock:
            term = self._term
            if term is None or self.election.term != term or not may_write():
                return False
            seen = fingerprint(self.dir)
            if seen == self._seen:
                return False
            try:
                blob = make_snapshot(self.dir)
                digest = digest_of(blob)
                if digest != self._published:
                    self.snapshots.save(self._next, blob, digest,
                                        guard=lambda: self.election.term == term and may_write())
                    self._mark(self._next, digest)
                    log.info("state replicated", extra={"fields": {"generation": self._next, "bytes": len(blob)}})
                    self._published, self._next = digest, self._next + 1
            except NotLeading:
                log.info("state not replicated: this replica no longer leads")
                return False
            except (TransientError, PermanentError, SnapshotError) as exc:
                log.warning("state not replicated; retried after the next pass", extra={"fields": {"error": str(exc)}})
                return False
            self._seen = seen
            self._last_publish = self._monotonic()
            return True

    def during(self) -> None:
        """From a long pass, now and then: publish if `interval` seconds have passed since the last one."""
        if self._monotonic() - self._last_publish >= self.interval:
            self.publish()

    def close(self) -> None:
        self.snapshots.close()


def replica_from_settings(settings: Any, election: Term | None,
                          on_restore: Callable[[], None] | None = None) -> StateReplica | None:
    """The replication the settings ask for (`leader_election.replicate_state`), None when off. ValueError says
    what is missing: leader election, or a shared secret store (credentials are never in a snapshot)."""
    section = settings.leader_election
    if not section.replicate_state:
        return None
    if not section.enabled or election is None:
        raise ValueError("replicate_state needs leader_election.enabled: true (only the leader publishes state)")
    if settings.secret_store.backend != "kubernetes":
        raise ValueError("replicate_state needs secret_store.backend: kubernetes (credentials are never in a snapshot: "
                         "with the file store a new leader would generate them anew)")
    from gitops.apply.stores import store_location

    namespace, instance = store_location(settings)
    module, _, attr = SNAPSHOTS.partition(":")
    try:
        store_class = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise ValueError(f"state replication needs the kubernetes extra ({exc})") from None
    return StateReplica(settings.state_dir, store_class(namespace, instance), election,
                        interval=section.replicate_interval, on_restore=on_restore)
