"""The daemon's pass: one `pipeline.reconcile` per processed commit, stoppable, turned into status.

The state store, the secret store `secret_store.backend` names (gitops.apply.stores) and the backends are opened
once (the daemon holds the state directory's lock) and reused by every pass; `close()` closes them. `during`,
when set, is called now and then while a pass runs (state replication publishes a long pass's progress).
With no provider configured it is the same pipeline stopping at the plan, and the status says so
(`Validated`, resources `Pending`), never `Reconciled`.

A pass stops early — the steps in flight finish and are journalled, nothing new starts — when the daemon is
asked to stop (SIGTERM) or when `preempt()` says a newer commit is waiting; the next pass re-plans.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from gitops.apply.state import StateStore
from gitops.apply.stores import open_existing_secret_store, open_secret_store
from gitops.compile.cache import CompileCache
from gitops.pipeline import ReconcileResult, reconcile
from gitops.providers.wiring import build_backends, close_backends
from gitops.settings.model import Settings
from gitops.source.files import FileSource
from gitops.source.load import ParseCache
from gitops.status.model import PassResult
from gitops.status.outcome import planned_only, to_pass_result


class DaemonPass:
    def __init__(
        self,
        settings: Settings,
        cache: ParseCache | None = None,
        strict: bool = False,
        *,
        stop: threading.Event | None = None,
        check_every: float | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.strict = strict
        self.stop = stop or threading.Event()  # the daemon's: set on SIGTERM
        self.preempt: Callable[[], bool] | None = None  # set by the poller: is a newer commit waiting?
        self.during: Callable[[], object] | None = None  # called now and then during a pass (state replication)
        self.check_every = check_every if check_every is not None else max(1.0, settings.source.poll_interval)
        self.store = StateStore(settings.state_dir)
        try:  # with no provider, only a store that already exists (nothing is generated)
            self.secrets = open_secret_store(settings) if settings.providers else open_existing_secret_store(settings)
        except BaseException:
            self.store.close()
            raise
        try:
            self.backends = build_backends(settings, self.secrets)
        except BaseException:
            self._close_stores()
            raise
        self.compile_cache = CompileCache()  # in memory: the next commit recompiles only the units it changed
        self.closed = False

    def __call__(self, source: FileSource, commit: str) -> PassResult:
        result = self._reconcile(source, commit, dry_run=False)
        prefix = self.settings.source.path  # status names files relative to the repository root
        if not self.backends and result.valid:
            return planned_only(result, commit, prefix)
        return to_pass_result(result, commit, prefix)

    def _reconcile(self, source: FileSource, commit: str, dry_run: bool) -> ReconcileResult:
        halt = threading.Event()
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(halt, done), name="preempt", daemon=True)
        watcher.start()
        result: ReconcileResult | None = None
        try:
            result = reconcile(
                source,
                self.settings,
                head=commit,
                store=self.store,
                secrets=self.secrets,
                backends=self.backends,
                cache=self.cache,
                strict=self.strict,
                dry_run=dry_run,
                compile_cache=self.compile_cache,
                stop=halt,
            )
            return result
        finally:
            done.set()
            watcher.join()
            self._save_cache(result)

    def _watch(self, halt: threading.Event, done: threading.Event) -> None:
        """Stop the pass (finish what is in flight, start nothing new) on SIGTERM or when a newer commit waits."""
        waited = 0.0
        tick = min(0.2, self.check_every)
        while not done.wait(tick):
            if self.stop.is_set():
                halt.set()
                return
            if self.during is not None:
                with contextlib.suppress(Exception):  # it logs its own failures; the pass goes on
                    self.during()
            waited += tick
            if self.preempt is not None and waited >= self.check_every:
                waited = 0.0
                with contextlib.suppress(Exception):  # a failed check is no reason to stop
                    if self.preempt():
                        halt.set()
                        return

    def _save_cache(self, result: ReconcileResult | None) -> None:
        if self.cache is not None:
            if result is not None and result.read is not None:  # keep the parses of this commit's files only
                self.cache.retain({f.blob_id for f in result.read.loaded.files.values()})
            with contextlib.suppress(OSError):
                self.cache.save()

    def drift(self, source: FileSource, commit: str) -> int:
        """How many changes a plan of `commit` against live state has now (0: no drift). Applies nothing."""
        result = self._reconcile(source, commit, dry_run=True)
        if result.error or result.plan is None:
            raise RuntimeError(result.error or "the commit no longer plans")
        return sum(result.plan.counts().values())

    def close(self) -> None:
        """Close the backends and stores (on stop); idempotent."""
        if self.closed:
            return
        self.closed = True
        close_backends(self.backends)
        self._close_stores()

    def _close_stores(self) -> None:
        self.store.close()
        if self.secrets is not None:
            self.secrets.close()


def default_pass(
    settings: Settings, cache: ParseCache | None = None, strict: bool = False, *, stop: threading.Event | None = None
) -> DaemonPass:
    """The pass `run` uses."""
    return DaemonPass(settings, cache, strict, stop=stop)
