"""Apply: execute a plan's changes through the backends in dependency order, then verify by observing again.

The executor never decides what changes — it carries out `Plan.changes` as given — and it returns a change
set (created / configured / unchanged / deleted / skipped / failed), not exceptions:

- **Order.** Creates, updates and replaces run after the changes of what they depend on; deletes run in
  reverse (a thing is deleted before what it depends on). Independent changes run concurrently, at most
  `concurrency[provider]` at a time per provider.
- **Errors.** `gitops.providers.errors.classify` is the one place that decides: TransientError (and
  timeouts, refused connections, 429 / 5xx / 409 answers) are retried with exponential backoff and full
  jitter, never sooner than the backend's `retry_after`; anything else is permanent. A failure skips the
  changes that wait on it, with a message naming it; independent branches carry on. Each change has a
  deadline covering its retries.
- **Journal and inventory.** Each step is journalled before it starts and after it ends. A successful
  create/update/replace is recorded in the inventory, a successful delete forgotten (a failed delete stays).
  Steps a killed run left unfinished are closed by the next run, which has re-planned against live state.
- **Fence.** Before every write step, of every provider, the executor asks the process's write fence
  (`gitops.daemon.leader.may_write`: true unless a leader election runs and this replica does not lead). A
  replica that lost the lease — a leader paused past its renew deadline and woken up — writes nothing more:
  the step is skipped (its journal entry stays in flight, closed as interrupted by a later run, never as
  failed), nothing new starts, nothing is verified, and the run is refused as not leading. The new leader
  converges. With no election running the check is a lock and a comparison.
- **Verify.** Every touched provider is observed again: each applied object must be present with the hash
  it was applied with (or, where the store keeps none, the spec), each deleted one absent. A mismatch is a
  failure, never a success. Messages are scrubbed of every secret value the process knows.
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gitops.apply.observe import ignored_fields, scopes, spec_matches
from gitops.apply.result import RunResult, Status, StepResult
from gitops.apply.secrets import SecretStore, consumed_digest
from gitops.apply.state import StateStore
from gitops.daemon.leader import NotLeading, may_write
from gitops.objects import ManagedObject, Provider, secret_refs
from gitops.plan.guard import guard_names
from gitops.plan.model import Action, Change, Plan
from gitops.providers.errors import classify
from gitops.providers.protocol import (
    ApplyResult,
    Backend,
    Observed,
    Outcome,
    PermanentError,
    Resolve,
    TransientError,
    TypeTraits,
)
from gitops.providers.wiring import Traits
from gitops.settings.load import REDACTOR
from gitops.settings.model import Settings

log = logging.getLogger("hiclaw_gitops.apply")
log.addHandler(logging.NullHandler())  # a command prints the change set itself; a daemon configures handlers

APPLY_ACTIONS = (Action.CREATE, Action.UPDATE, Action.REPLACE)
NOT_LEADING = "not written: this replica does not hold the leader lease (any more); the leader applies it"


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    """How to run: per-provider concurrency, the per-change deadline, retries and backoff, guard override."""

    concurrency: Mapping[str, int] = field(default_factory=dict)  # provider -> in flight at most
    default_concurrency: int = 4
    timeout: float = 300.0  # seconds per change, retries included
    retries: int = 5  # transient failures retried this many times
    backoff: float = 0.5  # first backoff ceiling (seconds), doubled per attempt
    backoff_max: float = 30.0
    allow_mass_delete: bool = False
    run_id: str = ""
    stop: threading.Event | None = None  # set: start nothing new (a newer commit pre-empts the run)
    verify_attempts: int = 3
    progress: Callable[[StepResult, int, int], None] | None = None  # (step, done, total) as each step ends

    def limit(self, provider: str) -> int:
        return max(1, int(self.concurrency.get(provider, self.default_concurrency)))

    @classmethod
    def from_settings(cls, settings: Settings, *, concurrency: int | None = None, **kw: Any) -> ApplyOptions:
        """Concurrency from each provider section (`concurrency: N`), or `concurrency` for all."""
        if concurrency:
            return cls(concurrency={p.value: concurrency for p in Provider}, default_concurrency=concurrency, **kw)
        sections = {"runtime": settings.runtime, "matrix": settings.matrix, "storage": settings.storage,
                    "gateway": settings.gateway}
        per = {name: int(section.concurrency) for name, section in sections.items() if section is not None}
        return cls(concurrency=per, **kw)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


# Errors: the one place that decides what is worth retrying -------------------------------------------


def describe(exc: BaseException) -> str:
    """A message for people, scrubbed of every secret value this process has seen."""
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (TransientError, PermanentError)):
        text = f"{type(exc).__name__}: {text}"
    return REDACTOR.redact(text)


def backoff_delay(attempt: int, retry_after: float | None, base: float, cap: float) -> float:
    """Full jitter (uniform in [0, min(cap, base·2^(attempt-1))]), and never less than the server asked."""
    delay = random.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))  # jitter, not security
    return max(delay, retry_after) if retry_after is not None else delay


# The executor ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Task:
    index: int
    change: Change
    obj: ManagedObject
    waits: set[str] = field(default_factory=set)
    dependents: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        return self.change.key

    @property
    def provider(self) -> str:
        return self.change.provider


@dataclass(frozen=True, slots=True)
class _Attempt:
    outcome: Outcome | None
    attempts: int
    message: str
    duration: float
    result: ApplyResult | None = None
    obj: ManagedObject | None = None  # the object as applied (its consumed digest taken just before)
    fenced: bool = False  # not attempted (or stopped) because this replica does not lead


def execute(
    plan: Plan,
    desired: Mapping[str, ManagedObject],
    backends: Mapping[Provider, Backend],
    store: StateStore,
    secrets: SecretStore | None = None,
    options: ApplyOptions | None = None,
    *,
    observed: Mapping[str, Observed] | None = None,
    current: Mapping[str, ManagedObject] | None = None,
    traits: Traits | None = None,
) -> RunResult:
    """Carry out `plan` (full specs from `desired`; objects to delete from the inventory, else `current`).

    `secrets` resolves references to values, takes the credentials applies produce, and digests what each
    consumer carries; `observed` gives each backend the object as last seen; `traits` are the backends'
    declarations (read from the backends when not given). A BaseException raised inside a backend (a
    simulated kill) propagates with the journal showing the steps in flight.
    """
    return _Executor(plan, desired, backends, store, secrets, options or ApplyOptions(), observed, current,
                     traits or Traits.of_backends(backends)).run()


def _no_secrets(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    names = sorted(set(secret_refs(spec)))
    if names:
        raise PermanentError(f"no secret store to resolve {', '.join(names)}")
    return spec


class _Executor:
    def __init__(
        self,
        plan: Plan,
        desired: Mapping[str, ManagedObject],
        backends: Mapping[Provider, Backend],
        store: StateStore,
        secrets: SecretStore | None,
        options: ApplyOptions,
        observed: Mapping[str, Observed] | None,
        current: Mapping[str, ManagedObject] | None,
        traits: Traits,
    ) -> None:
        self.plan = plan
        self.desired = desired
        self.backends = {p.value: b for p, b in backends.items()}
        self.store = store
        self.secrets = secrets
        self.resolve: Resolve = secrets.resolve if secrets is not None else _no_secrets
        self.traits = traits
        self.producers = {name: o.key for o in desired.values() for name in o.produces}
        self.records_busy: set[str] = set()  # shared records with a change in flight
        self.record_waiting: dict[str, list[str]] = {}  # record -> ready keys waiting for it
        self.options = options
        self.observed = observed or {}
        self.current = current or {}
        self.run_id = options.run_id or new_run_id()
        self.stop = options.stop or threading.Event()
        self.tasks: dict[str, _Task] = {}
        self.results: dict[str, StepResult] = {}
        self.waiting: dict[str, set[str]] = {}  # key -> keys it still waits on
        self.ready: dict[str, list[tuple[int, int, str]]] = {}  # provider -> heap of (-height, plan order, key)
        self.heights: dict[str, int] = {}  # longest chain of changes waiting on a change: the critical path first
        self.started: set[str] = set()
        self.by_provider: dict[str, list[str]] = {}  # task keys per provider
        self.remaining: dict[str, int] = {}  # tasks per provider without a result yet
        self.verifying: set[str] = set()  # providers whose verification has started (or was not needed)
        self.verified = True
        self.fenced = False  # this replica lost the lease during the run: nothing more is written or verified

    # Run ---------------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        started = time.monotonic()
        resumed = self._close_interrupted()
        unchanged = [StepResult(c.key, c.owner, c.action.value, Status.UNCHANGED, c.reason)
                     for c in self.plan.changes if c.action is Action.NOOP]
        active = [c for c in self.plan.changes if c.action is not Action.NOOP]
        if self.plan.guard.get("tripped") and not self.options.allow_mass_delete:
            reasons = "; ".join(str(r) for r in self.plan.guard.get("reasons", ())) or "mass deletion"
            refused = (f"{guard_names(self.plan.guard)}: {reasons}; nothing was applied "
                       "(allow it with --allow-mass-delete)")
            log.warning("run %s refused: %s", self.run_id, refused)
            steps = [StepResult(c.key, c.owner, c.action.value, Status.SKIPPED, refused) for c in active]
            return RunResult(self.run_id, self.plan.head, _sorted([*steps, *unchanged]), False,
                             time.monotonic() - started, refused, resumed)
        self._build(active)
        self._schedule()
        for provider in sorted(self.by_provider):  # verification that could not start during the run
            if provider not in self.verifying and not self.fenced:
                self.verifying.add(provider)
                if self._touched(provider):
                    self._check(provider, self._observe(provider))
        steps = [*self.results.values(), *unchanged]
        if self.fenced:
            log.warning("run %s stopped: %s", self.run_id, NOT_LEADING)
        result = RunResult(self.run_id, self.plan.head, _sorted(steps), self.verified and not self.fenced,
                           time.monotonic() - started, NOT_LEADING if self.fenced else "", resumed)
        log.info("run %s: %s", self.run_id, ", ".join(f"{n} {s}" for s, n in result.counts().items() if n))
        return result

    def _close_interrupted(self) -> tuple[str, ...]:
        unfinished = self.store.unfinished()
        for e in unfinished:
            self.store.journal(e.run_id, e.key, e.action, "failed", f"interrupted; resumed by run {self.run_id}")
            log.warning("%s %s was in flight when run %s stopped; re-planned and resumed", e.action, e.key, e.run_id)
        return tuple(sorted({e.key for e in unfinished}))

    # Graph -------------------------------------------------------------------------------------------

    def _build(self, active: list[Change]) -> None:
        inventory = self.store.inventory()
        by_key = {c.key: c for c in active}
        for index, change in enumerate(active):
            obj: ManagedObject | None
            if change.action is Action.DELETE:
                obj = inventory.get(change.key) or self.current.get(change.key) or _from_change(change)
            else:
                obj = self.desired.get(change.key)
            if obj is None:
                self._set(change, Status.FAILED, "not in the desired state given to apply")
                continue
            if change.provider not in self.backends:
                self._set(change, Status.FAILED, f"provider {change.provider} has no backend in this run")
                continue
            self.tasks[change.key] = _Task(index, change, obj)
            self.by_provider.setdefault(change.provider, []).append(change.key)
            self.remaining[change.provider] = self.remaining.get(change.provider, 0) + 1
        for task in self.tasks.values():
            change = task.change
            for dep in change.depends_on:
                other = by_key.get(dep)
                if other is None:
                    continue
                if change.action in APPLY_ACTIONS and other.action in APPLY_ACTIONS:
                    self._edge(before=dep, after=change.key)
                elif change.action is Action.DELETE and other.action is Action.DELETE:
                    self._edge(before=change.key, after=dep)  # a thing goes before what it depends on
            if change.action in APPLY_ACTIONS:  # a secret some other change produces (an agent's Matrix token)
                for made_by in {self.producers.get(name) for name in secret_refs(task.obj.spec)} - {None, change.key}:
                    other = by_key.get(str(made_by))
                    if other is not None and other.action in APPLY_ACTIONS:
                        self._edge(before=other.key, after=change.key)
                # An update that drops a dependency runs before that dependency's delete (a route stops naming a
                # consumer before the consumer goes; a Deployment stops mounting a Secret before it is deleted).
                was = self.current.get(change.key) or inventory.get(change.key)
                for dep in (was.depends_on if was is not None else ()):
                    other = by_key.get(dep)
                    if other is not None and other.action is Action.DELETE and dep not in change.depends_on:
                        self._edge(before=change.key, after=dep)
        # What stays must keep what it depends on: such deletes are skipped, not run.
        for change in self.plan.changes:
            if change.action is Action.DELETE:
                continue
            for dep in change.depends_on:
                if dep in self.tasks and self.tasks[dep].change.action is Action.DELETE and dep not in self.results:
                    self._set(self.tasks[dep].change, Status.SKIPPED, f"kept: {change.key} still depends on it")
                    self._skip_dependents(dep)
        for key in [k for k in by_key if k in self.results and k in self.tasks]:
            self._skip_dependents(key)
        for key in [k for k in by_key if k in self.results and k not in self.tasks]:
            self._skip_waiting_on(by_key[key])
        self._break_cycles()

    def _edge(self, *, before: str, after: str) -> None:
        if before in self.tasks:
            self.tasks[after].waits.add(before)
            self.tasks[before].dependents.add(after)

    def _skip_waiting_on(self, failed: Change) -> None:
        """A change that never became a task (failed up front): skip the tasks that would have waited on it."""
        for task in self.tasks.values():
            if task.key in self.results:
                continue
            change = task.change
            if change.action in APPLY_ACTIONS and failed.action in APPLY_ACTIONS and failed.key in change.depends_on:
                self._set(change, Status.SKIPPED, f"dependency {failed.key} failed")
            elif change.action is Action.DELETE and failed.action is Action.DELETE and task.key in failed.depends_on:
                self._set(change, Status.SKIPPED, f"{failed.key} depends on it and was not deleted")
            else:
                continue
            self._skip_dependents(task.key)

    def _break_cycles(self) -> None:
        pending = {k: {w for w in t.waits if w not in self.results} for k, t in self.tasks.items()
                   if k not in self.results}
        ready = [k for k, w in pending.items() if not w]
        while ready:
            key = ready.pop()
            for d in self.tasks[key].dependents:
                if d in pending and key in pending[d]:
                    pending[d].discard(key)
                    if not pending[d]:
                        ready.append(d)
            pending.pop(key, None)
        stuck = sorted(k for k, w in pending.items() if w)
        for key in stuck:
            self._set(self.tasks[key].change, Status.FAILED, f"dependency cycle among {', '.join(stuck)}")

    # Scheduling --------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Run every task whose dependencies are done, at most `limit(provider)` at a time per provider, and
        verify each provider as soon as its last change is over (while other providers are still busy)."""
        todo = {k: t for k, t in self.tasks.items() if k not in self.results}
        if not todo:
            return
        self.heights = _heights(todo)
        self.waiting = {k: {w for w in t.waits if w not in self.results} for k, t in todo.items()}
        for key, waits in self.waiting.items():
            if not waits:
                self._push(key)
        workers = sum(self.options.limit(p) for p in self.by_provider)
        in_flight = dict.fromkeys(self.by_provider, 0)
        running: dict[cf.Future[_Attempt], tuple[str, float]] = {}
        abandoned: dict[cf.Future[_Attempt], str] = {}  # timed out, still occupying a slot until they return
        checking: dict[cf.Future[dict[str, Observed] | Exception], str] = {}
        pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply")
        try:
            while True:
                if self.stop.is_set() or self._lost_lease():
                    self._skip_unstarted()
                for provider, heap in self.ready.items():
                    while heap and in_flight[provider] < self.options.limit(provider):
                        key = heapq.heappop(heap)[2]
                        if key in self.results:
                            continue
                        task = self.tasks[key]
                        if task.obj.shares:
                            if task.obj.shares in self.records_busy:  # one change per shared record at a time
                                self.record_waiting.setdefault(task.obj.shares, []).append(key)
                                continue
                            self.records_busy.add(task.obj.shares)
                        self.store.journal(self.run_id, key, task.change.action.value, "start")
                        self.started.add(key)
                        deadline = time.monotonic() + self.options.timeout
                        running[pool.submit(self._attempt, task, deadline)] = (key, deadline)
                        in_flight[provider] += 1
                for provider, count in self.remaining.items():
                    if count == 0 and provider not in self.verifying and not self.fenced:
                        self.verifying.add(provider)
                        if self._touched(provider):
                            checking[pool.submit(self._observe, provider)] = provider
                if not running and not checking and not (abandoned and any(self.ready.values())):
                    break
                timeout = max(0.0, min(d for _, d in running.values()) - time.monotonic()) if running else None
                pending: list[cf.Future[Any]] = [*running, *abandoned, *checking]
                done, _ = cf.wait(pending, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    if future in checking:
                        self._check(checking.pop(future), future.result())
                    elif future in abandoned:
                        key = abandoned.pop(future)
                        in_flight[self.tasks[key].provider] -= 1
                        self._release(key)
                    else:
                        key, _ = running.pop(future)
                        in_flight[self.tasks[key].provider] -= 1
                        self._release(key)
                        self._finish(key, future.result())  # a BaseException (simulated kill) propagates here
                now = time.monotonic()
                for future, (key, deadline) in list(running.items()):
                    if now >= deadline:
                        del running[future]
                        abandoned[future] = key
                        self._finish(key, _Attempt(None, 0, f"timed out after {self.options.timeout:g}s",
                                                   self.options.timeout))
            self._skip_unstarted()
        finally:
            # Abandoned calls cannot be interrupted: let them finish in the background, unobserved.
            pool.shutdown(wait=False, cancel_futures=True)

    def _release(self, key: str) -> None:
        """The change on a shared record is over: the next change waiting for that record may start."""
        record = self.tasks[key].obj.shares
        if record and record in self.records_busy:
            self.records_busy.discard(record)
            for waiting in self.record_waiting.pop(record, []):
                self._push(waiting)

    def _push(self, key: str) -> None:
        task = self.tasks[key]
        heapq.heappush(self.ready.setdefault(task.provider, []), (-self.heights.get(key, 0), task.index, key))

    def _lost_lease(self) -> bool:
        """Whether the write fence says no (sticky: a replica that lost the lease stays fenced for this run)."""
        if not self.fenced and not may_write():
            self.fenced = True
        return self.fenced

    def _skip_unstarted(self) -> None:
        for key, task in self.tasks.items():
            if key not in self.results and key not in self.started:
                if self.fenced:
                    reason = NOT_LEADING
                elif self.stop.is_set():
                    reason = "stopped before it started (a newer commit pre-empted the run)"
                else:
                    reason = "never became ready"
                self._set(task.change, Status.SKIPPED, reason)

    def _attempt(self, task: _Task, deadline: float) -> _Attempt:
        """Run one change with retries (in a worker thread; touches no shared state but the backend)."""
        backend = self.backends[task.provider]
        started = time.monotonic()
        attempts = 0
        while True:
            if not may_write():  # asked before every write, retries included
                return _Attempt(None, attempts, NOT_LEADING, time.monotonic() - started, fenced=True)
            attempts += 1
            try:
                if task.change.action is Action.DELETE:
                    return _Attempt(Outcome(backend.delete(task.obj)), attempts, "", time.monotonic() - started)
                obj = self._with_consumed(task.obj)
                before = self.observed.get(task.key)
                result = backend.apply(obj, task.change.action.value, before, self.resolve)
                if not isinstance(result, ApplyResult):
                    raise PermanentError(f"the {task.provider} backend returned {type(result).__name__}, "
                                         "not an ApplyResult")
                return _Attempt(Outcome(result.outcome), attempts, "", time.monotonic() - started, result, obj)
            except NotLeading:  # an adapter's own fence (the lease was lost during this call)
                return _Attempt(None, attempts, NOT_LEADING, time.monotonic() - started, fenced=True)
            except Exception as exc:
                verdict = classify(exc)
                transient, retry_after = verdict.transient, verdict.retry_after
                message = describe(exc)
                elapsed = time.monotonic() - started
                if not transient:
                    return _Attempt(None, attempts, message, elapsed)
                if attempts > self.options.retries:
                    return _Attempt(None, attempts, f"gave up after {attempts} attempts: {message}", elapsed)
                delay = backoff_delay(attempts, retry_after, self.options.backoff, self.options.backoff_max)
                if time.monotonic() + delay > deadline:
                    return _Attempt(None, attempts, f"timed out after {attempts} attempts: {message}", elapsed)
                log.info("%s %s: %s; retrying in %.2fs", task.change.action.value, task.key, message, delay)
                if self.stop.wait(delay):
                    return _Attempt(None, attempts, f"stopped while waiting to retry: {message}",
                                    time.monotonic() - started)

    def _with_consumed(self, obj: ManagedObject) -> ManagedObject:
        """`obj` carrying the digest of the secret values it consumes now (outputs produced earlier in this
        run included): the hash it is applied and recorded with."""
        if self.secrets is None:
            return obj
        names = set(secret_refs(obj.spec))
        if not names:
            return obj
        store = self.secrets
        for name in names:  # generated credentials exist from their first use on
            if name not in self.producers:
                store.get_or_create(name)
        return obj.with_consumed(consumed_digest(names, store.peek))

    def _outputs(self, task: _Task, result: ApplyResult) -> str:
        """Store what the apply produced; a problem ('' if none): an undeclared output is refused."""
        undeclared = sorted(set(result.secrets) - set(task.obj.produces))
        if undeclared:
            return f"the backend produced undeclared output(s) {', '.join(undeclared)}; nothing stored"
        if result.secrets and self.secrets is None:
            return "the backend produced credentials but there is no secret store to keep them"
        for name, value in result.secrets.items():
            assert self.secrets is not None
            self.secrets.put(name, value)
        return ""

    def _finish(self, key: str, attempt: _Attempt) -> None:
        task = self.tasks[key]
        action = task.change.action
        note = ""
        if attempt.obj is not None:
            task.obj = attempt.obj
        if attempt.outcome is not None and action is not Action.DELETE and attempt.outcome is Outcome.DELETED:
            if self.traits.of(task.obj).absent_by_design(task.obj.spec):  # e.g. Stopped: absence is applied
                attempt, note = replace(attempt, outcome=Outcome.CONFIGURED), "removed (absent by design)"
            else:
                attempt = replace(attempt, outcome=None, message="the backend answered `deleted` to an apply")
        if attempt.outcome is not None and attempt.result is not None:
            problem = self._outputs(task, attempt.result)
            if problem:
                attempt = replace(attempt, outcome=None, message=problem)
        if attempt.fenced:  # not a failure of the change: its journal entry stays in flight
            self.fenced = True
            self._set(task.change, Status.SKIPPED, attempt.message, attempt.attempts, attempt.duration)
            self._skip_dependents(key)
            return
        if attempt.outcome is None:
            self.store.journal(self.run_id, key, action.value, "failed", attempt.message)
            self._set(task.change, Status.FAILED, attempt.message, attempt.attempts, attempt.duration)
            self._skip_dependents(key)
            return
        if action is Action.DELETE:
            status = Status.DELETED
            self.store.forget(key)
        else:
            status = Status(attempt.outcome.value)
            result = attempt.result
            outputs = {"ids": dict(result.ids), "fingerprint": result.fingerprint} if result and (
                result.ids or result.fingerprint) else None
            self.store.record(task.obj, self.plan.head, outputs)
        # Journalled as done only once the inventory says so: a kill in between leaves the step unfinished.
        self.store.journal(self.run_id, key, action.value, "done", status.value)
        self._set(task.change, status, note, attempt.attempts, attempt.duration)
        for dependent in task.dependents:
            waits = self.waiting.get(dependent)
            if waits is None or dependent in self.results:
                continue
            waits.discard(key)
            if not waits:
                self._push(dependent)

    def _skip_dependents(self, root: str) -> None:
        stack = [root]
        while stack:
            key = stack.pop()
            for dependent in sorted(self.tasks[key].dependents):
                if dependent in self.results:
                    continue
                what = self.tasks[dependent].change.action
                if what is Action.DELETE:
                    why = f"{key} depends on it and was not deleted"
                elif key == root:
                    why = f"dependency {root} failed"
                else:
                    why = f"dependency {key} was skipped ({root} failed)"
                self._set(self.tasks[dependent].change, Status.SKIPPED, why)
                stack.append(dependent)

    def _set(self, change: Change, status: Status, message: str, attempts: int = 0, duration: float = 0.0) -> None:
        message = REDACTOR.redact(message) if message else message
        if change.key in self.tasks and change.key not in self.results:
            self.remaining[change.provider] -= 1
        step = StepResult(change.key, change.owner, change.action.value, status, message, attempts, duration)
        self.results[change.key] = step
        level = logging.WARNING if status in (Status.FAILED, Status.SKIPPED) else logging.INFO
        log.log(level, "%s %s: %s%s", change.action.value, change.key, status.value, f" ({message})" if message else "")
        if self.options.progress is not None and change.key in self.tasks:
            self.options.progress(step, len(self.results), len(self.tasks))

    # Verify ------------------------------------------------------------------------------------------

    def _touched(self, provider: str) -> list[str]:
        done = (Status.CREATED, Status.CONFIGURED, Status.UNCHANGED, Status.DELETED)
        return [k for k in self.by_provider.get(provider, ()) if k in self.results and self.results[k].status in done]

    def _observe(self, provider: str) -> dict[str, Observed] | Exception:
        """One observation for verification (in a worker thread), with a few retries; the error if it fails."""
        attempt = 0
        while True:
            attempt += 1
            try:
                scope = scopes([Provider(provider)], self._touched(provider), exact=True)[Provider(provider)]
                return self.backends[provider].observe(scope)
            except Exception as exc:
                verdict = classify(exc)
                if not verdict.transient or attempt >= self.options.verify_attempts:
                    return exc
                time.sleep(backoff_delay(attempt, verdict.retry_after, self.options.backoff, self.options.backoff_max))

    def _check(self, provider: str, seen: dict[str, Observed] | Exception) -> None:
        """Every applied object present as applied, every deleted one gone; otherwise the step failed."""
        keys = self._touched(provider)
        if isinstance(seen, Exception):
            self.verified = False
            for key in keys:
                self._fail_verify(key, f"could not verify: {describe(seen)}")
            return
        for key in keys:
            task = self.tasks[key]
            if task.change.action is Action.DELETE:
                if key in seen:
                    self.verified = False
                    self.store.record(task.obj, self.plan.head)  # still there: still ours to prune
                    self._fail_verify(key, "verify: still present after delete")
                continue
            problem = mismatch(task.obj, seen.get(key), self.traits.of(task.obj))
            if problem:
                self.verified = False
                self._fail_verify(key, f"verify: {problem}")

    def _fail_verify(self, key: str, message: str) -> None:
        task = self.tasks[key]
        before = self.results[key]
        self.store.journal(self.run_id, key, task.change.action.value, "failed", message)
        self._set(task.change, Status.FAILED, message, before.attempts, before.duration)


def mismatch(obj: ManagedObject, seen: Observed | None, traits: TypeTraits) -> str:
    """Why an observation does not show `obj` as applied ('' when it does)."""
    if seen is None:
        return "" if traits.absent_by_design(obj.spec) else "not present after apply"
    if seen.recorded_hash is not None:
        if seen.recorded_hash != obj.hash:
            return f"observed with spec hash {seen.recorded_hash}, applied {obj.hash}"
        return ""
    if not spec_matches(obj.spec, seen.spec, ignored_fields(obj, traits)):
        return "the observed spec differs from the applied spec"
    return ""


def _heights(tasks: Mapping[str, _Task]) -> dict[str, int]:
    """For each task, the longest chain of tasks that wait on it (0: nothing does). Tasks form a DAG here."""
    heights: dict[str, int] = {}
    for root in tasks:
        stack = [(root, False)]
        while stack:
            key, expanded = stack.pop()
            if key in heights:
                continue
            below = [d for d in tasks[key].dependents if d in tasks]
            if expanded:
                heights[key] = 1 + max((heights[d] for d in below), default=-1)
            else:
                stack.append((key, True))
                stack.extend((d, False) for d in below if d not in heights)
    return heights


def _from_change(change: Change) -> ManagedObject:
    """An object to delete that neither the inventory nor the baseline holds (a saved plan's own record)."""
    provider, type_, name = change.key.split("/", 2)
    return ManagedObject(Provider(provider), type_, name, dict(change.before or {}), change.owner,
                         tuple(change.depends_on))


def _sorted(steps: Iterable[StepResult]) -> tuple[StepResult, ...]:
    return tuple(sorted(steps, key=lambda s: s.key))

