"""Leader election on a lease, so several daemons run with exactly one active: the others stand by.

The lease is a record with a holder, a duration and a renew time, changed only by optimistic concurrency (a
write carrying the version it read; a stale one is refused). On Kubernetes it is a `coordination.k8s.io/v1`
Lease (`backends.kubernetes_lease.KubeLeaseStore`); the core sees only the `LeaseStore` protocol.

The rules, as client-go's leader election has them:
- no lease, or a lease whose holder has not renewed for `lease_duration` *as observed by this process's own
  clock* (never by comparing clocks across machines): take it, writing ourselves as holder;
- our lease: renew it every `retry_period`;
- a write refused as stale, or any failure talking to the store: not the leader this round.

`leading()` is the fence every write path asks: it is true only until `renew_deadline` (shorter than the
lease duration) after the last successful acquire or renew, by the monotonic clock. A leader paused (GC,
SIGSTOP, a frozen VM) for longer than that wakes up not leading — before it has spoken to the store — and a
standby has had the lease for at least `lease_duration - renew_deadline` by then, so the two never write
together. Stopping releases the lease (holder cleared) so a standby takes over at its next try.

`term` counts this process's acquisitions (a create or a takeover, never a renewal of a lease still ours): a
term that changed means someone else may have held the lease, and written, since this process last led — what
state replication (gitops.daemon.replica) asks before trusting its own state directory again.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from gitops.providers.errors import PermanentError, TransientError

log = logging.getLogger("hiclaw_gitops.leader")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One lease as stored. `version` is the store's optimistic-concurrency token (resourceVersion)."""

    holder: str
    duration: float
    renewed: str  # the holder's RFC 3339 renew time, informative only (clocks are never compared)
    transitions: int = 0
    acquired: str = ""
    version: str = ""


class LeaseStore(Protocol):
    """Where the lease lives. `create` and `update` raise LeaseConflict when someone else wrote first."""

    def get(self) -> LeaseRecord | None: ...

    def create(self, record: LeaseRecord) -> LeaseRecord: ...

    def update(self, record: LeaseRecord) -> LeaseRecord: ...


class LeaseConflict(Exception):
    """The lease was written by someone else since it was read (or created by someone else first)."""


@dataclass(frozen=True, slots=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry_period < renew_deadline < lease_duration "
                             f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration})")


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_fence_lock = threading.Lock()
_fence: Callable[[], bool] | None = None


def may_write() -> bool:
    """The process-wide write fence: true unless a started elector says this process does not lead. Adapters
    check it before each write, so a leader paused in the middle of a pass stops writing when it wakes."""
    with _fence_lock:
        fence = _fence
    return fence is None or fence()


class NotLeading(TransientError):
    """A write refused by the fence: this process does not hold the lease (any more)."""


class LeaderElector:
    """Campaigns for the lease as `identity`; `leading()` says whether this process may write right now."""

    def __init__(self, store: LeaseStore, identity: str, timing: Timing | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] | None = None) -> None:
        if not identity:
            raise ValueError("leader election needs an identity (the pod name)")
        self.store, self.identity = store, identity
        self.timing = timing or Timing()
        self._monotonic = monotonic
        self._on_change = on_change
        self._lock = threading.Lock()
        self._renewed_at: float | None = None  # monotonic time of our last successful acquire/renew
        self._observed: tuple[str, str, str] | None = None  # (holder, renewed, version) last seen
        self._observed_at = 0.0
        self._was_leading = False
        self._term = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # The fence -----------------------------------------------------------------------------------------

    def leading(self) -> bool:
        with self._lock:
            return self._renewed_at is not None and self._monotonic() - self._renewed_at < self.timing.renew_deadline

    @property
    def term(self) -> int:
        """How many times this process acquired the lease (renewals do not count)."""
        with self._lock:
            return self._term

    # One round -----------------------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One round of the campaign; whether this process leads afterwards."""
        try:
            won, acquired = self._round()
        except LeaseConflict:
            won = acquired = False
        except (TransientError, PermanentError) as exc:
            log.warning("leader election: %s", exc)
            won = acquired = False
        now = self._monotonic()
        with self._lock:
            if won:
                self._renewed_at = now
            if acquired:
                self._term += 1
        leading = self.leading()
        if leading != self._was_leading:
            self._was_leading = leading
            log.info("leader election: %s %s the lease", self.identity, "holds" if leading else "does not hold")
            if self._on_change is not None:
                self._on_change(leading)
        return leading

    def _round(self) -> tuple[bool, bool]:
        """(leads now, acquired the lease in this round)."""
        now = self._monotonic()
        current = self.store.get()
        stamp = _now_rfc3339()
        duration = self.timing.lease_duration
        if current is None:
            self.store.create(LeaseRecord(self.identity, duration, stamp, 0, stamp))
            return True, True
        seen = (current.holder, current.renewed, current.version)
        if seen != self._observed:  # the record moved: its holder is alive, as of now by our clock
            self._observed, self._observed_at = seen, now
        if current.holder == self.identity:
            # Still ours, even after a pause past the renew deadline: the write is refused if anyone else
            # wrote since we read it, and we lead again only once it succeeds.
            self.store.update(replace(current, renewed=stamp, duration=duration))
            return True, self._term == 0  # a lease left by this identity before a restart is a new term here
        expired = not current.holder or now - self._observed_at >= max(current.duration, 0.0)
        if not expired:
            return False, False
        self.store.update(replace(current, holder=self.identity, duration=duration, renewed=stamp, acquired=stamp,
                                  transitions=current.transitions + 1))
        return True, True

    # The campaign thread -------------------------------------------------------------------------------

    def install_fence(self) -> None:
        """Make this elector the process's write fence (`may_write`)."""
        global _fence
        with _fence_lock:
            _fence = self.leading

    def start(self) -> LeaderElector:
        self.install_fence()
        self._thread = threading.Thread(target=self._campaign, name="hiclaw-leader", daemon=True)
        self._thread.start()
        return self

    def _campaign(self) -> None:
        while not self._stop.is_set():
            self.try_acquire_or_renew()
            self._stop.wait(self.timing.retry_period)

    def stop(self, release: bool = True) -> None:
        """Stop campaigning; with `release`, hand the lease back so a standby need not wait for it to expire."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.retry_period + 5)
        was = self.leading()
        with self._lock:
            self._renewed_at = None
        global _fence
        with _fence_lock:
            if _fence == self.leading:
                _fence = None
        if release and was:
            try:
                current = self.store.get()
                if current is not None and current.holder == self.identity:
                    self.store.update(replace(current, holder="", duration=1.0, renewed=_now_rfc3339()))
                    log.info("leader election: %s released the lease", self.identity)
            except (LeaseConflict, TransientError, PermanentError) as exc:
                log.warning("leader election: releasing the lease failed (%s); it expires by itself", exc)
        if self._on_change is not None and was:
            self._on_change(False)


LEASE_STORE = "backends.kubernetes_lease:KubeLeaseStore"  # imported only when leader election is enabled


def elector_from_settings(settings: Any, env: Mapping[str, str] | None = None) -> LeaderElector | None:
    """The elector the settings ask for (`leader_election.enabled`), on a Kubernetes Lease; None when off.
    Identity: the setting, else POD_NAME, else HOSTNAME; namespace: the setting, else POD_NAMESPACE, else
    runtime.namespace. ValueError names what is wrong (timing out of order, no identity, no client)."""
    section = settings.leader_election
    if not section.enabled:
        return None
    env = os.environ if env is None else env
    identity = section.identity or env.get("POD_NAME", "") or env.get("HOSTNAME", "") or socket.gethostname()
    namespace = section.namespace or env.get("POD_NAMESPACE", "") or settings.runtime_or_default.namespace
    timing = Timing(section.lease_duration, section.renew_deadline, section.retry_period)
    module, _, attr = LEASE_STORE.partition(":")
    try:
        store_class = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise ValueError(f"leader election needs the kubernetes extra ({exc})") from None
    return LeaderElector(store_class(section.lease_name, namespace), identity, timing)
