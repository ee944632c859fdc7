"""The executor: dependency order, bounded concurrency, retries, failures, timeouts, journal, verify, guards."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.memory import LIE, MemoryBackend, transient_then_ok
from gitops.apply.executor import ApplyOptions, backoff_delay, execute
from gitops.apply.result import Status
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.plan.model import make_plan
from gitops.providers.errors import classify
from gitops.providers.protocol import ApplyResult, Observed, Outcome, PermanentError, Resolve, TransientError

from .helpers import FAST, backends, converge, obj, plan_live, table


class Recording(MemoryBackend):
    """A memory backend that logs when each write starts and ends, into a log shared across backends."""

    def __init__(self, provider: str, log: list[tuple[str, str, str]], **kw: Any) -> None:
        super().__init__(provider, **kw)
        self.log = log
        self.log_lock = threading.Lock()

    def _note(self, what: str, key: str) -> None:
        with self.log_lock:
            self.log.append((what, key, threading.current_thread().name))

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        self._note("start", obj.key)
        try:
            return super().apply(obj, action, before, resolve)
        finally:
            self._note("end", obj.key)

    def delete(self, obj: ManagedObject) -> Outcome:
        self._note("start", obj.key)
        try:
            return super().delete(obj)
        finally:
            self._note("end", obj.key)


def position(log: list[tuple[str, str, str]], what: str, key: str) -> int:
    return next(i for i, (w, k, _) in enumerate(log) if w == what and k == key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state")
    yield s
    s.close()


def seed(backend: MemoryBackend, store: StateStore, *objects: ManagedObject) -> None:
    """Objects we applied earlier: present in the backend and in the inventory."""
    for o in objects:
        backend.put(o)
        store.record(o, "c0")


# Order ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 8])
def test_creates_run_after_their_dependencies_across_providers(store: StateStore, concurrency: int) -> None:
    log: list[tuple[str, str, str]] = []
    runtime = Recording("runtime", log, latency=0.005)
    matrix = Recording("matrix", log, latency=0.005)
    user = obj("matrix/user/alice")
    room = obj("matrix/room/team", deps=[user.key])
    container = obj("runtime/container/alice", deps=[user.key, room.key])
    loose = [obj(f"runtime/container/w{i}") for i in range(6)]
    desired = table(user, room, container, *loose)
    options = replace(FAST, default_concurrency=concurrency)
    _, result = converge(desired, backends(runtime=runtime, matrix=matrix), store, options=options)
    assert result.ok, result.to_dict()
    assert {s.key for s in result.created} == set(desired)
    for o in desired.values():
        for dep in o.depends_on:
            assert position(log, "end", dep) < position(log, "start", o.key), (dep, o.key)


def test_deletes_run_in_reverse_dependency_order(store: StateStore) -> None:
    log: list[tuple[str, str, str]] = []
    runtime = Recording("runtime", log, latency=0.005)
    matrix = Recording("matrix", log, latency=0.005)
    user = obj("matrix/user/bob")
    room = obj("matrix/room/bob", deps=[user.key])
    container = obj("runtime/container/bob", deps=[user.key, room.key])
    seed(matrix, store, user, room)
    seed(runtime, store, container)
    keep = obj("matrix/user/keep")
    _, result = converge(table(keep), backends(runtime=runtime, matrix=matrix), store,
                         options=replace(FAST, default_concurrency=8))
    assert result.ok, result.to_dict()
    assert {s.key for s in result.deleted} == {user.key, room.key, container.key}
    assert position(log, "end", container.key) < position(log, "start", room.key)
    assert position(log, "end", room.key) < position(log, "start", user.key)
    assert set(store.inventory()) == {keep.key}


# Concurrency ------------------------------------------------------------------------------------------


def test_concurrency_is_bounded_per_provider(store: StateStore) -> None:
    runtime = MemoryBackend("runtime", latency=0.02)
    matrix = MemoryBackend("matrix", latency=0.02)
    desired = table(*[obj(f"runtime/container/w{i}") for i in range(24)],
                    *[obj(f"matrix/user/u{i}") for i in range(24)])
    options = replace(FAST, concurrency={"runtime": 3, "matrix": 5})
    started = time.monotonic()
    _, result = converge(desired, backends(runtime=runtime, matrix=matrix), store, options=options)
    elapsed = time.monotonic() - started
    assert result.ok
    assert runtime.max_in_flight == 3
    assert matrix.max_in_flight == 5
    assert elapsed < 24 * 0.02 * 0.8  # ran concurrently: well under the serial time of the slower provider


# Errors -----------------------------------------------------------------------------------------------


def test_transient_errors_are_retried_honouring_retry_after(store: StateStore) -> None:
    runtime = MemoryBackend("runtime", faults=transient_then_ok(2, retry_after=0.05))
    o = obj("runtime/container/alice")
    _, result = converge(table(o), backends(runtime=runtime), store)
    step = result.step(o.key)
    assert step is not None and step.status is Status.CREATED
    assert step.attempts == 3
    assert step.duration >= 0.1  # two waits of at least retry_after each, though the jitter ceiling is 1 ms
    assert result.ok


def test_transient_errors_give_up_after_the_retry_budget(store: StateStore) -> None:
    runtime = MemoryBackend("runtime", faults=lambda op, key: TransientError("503") if op == "apply" else None)
    o = obj("runtime/container/alice")
    _, result = converge(table(o), backends(runtime=runtime), store, options=replace(FAST, retries=2))
    step = result.step(o.key)
    assert step is not None and step.status is Status.FAILED
    assert step.attempts == 3
    assert step.message.startswith("gave up after 3 attempts: 503")
    assert not result.ok


def test_permanent_failure_skips_dependents_only(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    a = obj("runtime/container/a")
    b = obj("runtime/container/b", deps=[a.key])
    c = obj("runtime/container/c", deps=[b.key])
    d = obj("runtime/container/d")
    e = obj("runtime/container/e", deps=[d.key])
    runtime.faults = lambda op, key: PermanentError("image missing") if key == a.key and op == "apply" else None
    _, result = converge(table(a, b, c, d, e), backends(runtime=runtime), store)
    by_key = {s.key: s for s in result.steps}
    assert by_key[a.key].status is Status.FAILED and by_key[a.key].message == "image missing"
    assert by_key[b.key].status is Status.SKIPPED and by_key[b.key].message == f"dependency {a.key} failed"
    assert by_key[c.key].status is Status.SKIPPED and a.key in by_key[c.key].message and b.key in by_key[c.key].message
    assert by_key[d.key].status is Status.CREATED and by_key[e.key].status is Status.CREATED
    assert set(runtime.ours()) == {d.key, e.key}
    assert set(store.inventory()) == {d.key, e.key}
    assert not result.ok and result.verified  # what was applied is verified; the run as a whole is not ok


def test_a_failed_delete_stays_in_the_inventory_and_keeps_what_it_depends_on(store: StateStore) -> None:
    matrix = MemoryBackend("matrix")
    user = obj("matrix/user/old")
    room = obj("matrix/room/old", deps=[user.key])
    seed(matrix, store, user, room)
    matrix.faults = lambda op, key: PermanentError("forbidden") if (op, key) == ("delete", room.key) else None
    _, result = converge(table(obj("matrix/user/keep")), backends(matrix=matrix), store)
    assert result.step(room.key).status is Status.FAILED  # type: ignore[union-attr]
    skipped = result.step(user.key)
    assert skipped is not None and skipped.status is Status.SKIPPED
    assert skipped.message == f"{room.key} depends on it and was not deleted"
    assert {room.key, user.key} <= set(store.inventory())
    assert {room.key, user.key} <= set(matrix.ours())


def test_a_change_over_its_deadline_fails_and_the_run_does_not_wait_for_it(store: StateStore) -> None:
    slow = obj("runtime/container/slow")
    after = obj("runtime/container/after", deps=[slow.key])
    other = obj("runtime/container/other")

    def stall(op: str, key: str) -> None:
        if key == slow.key:
            time.sleep(1.0)

    runtime = MemoryBackend("runtime", faults=stall)
    started = time.monotonic()
    _, result = converge(table(slow, after, other), backends(runtime=runtime), store,
                         options=replace(FAST, timeout=0.2))
    assert time.monotonic() - started < 0.9
    assert result.step(slow.key).status is Status.FAILED  # type: ignore[union-attr]
    assert result.step(slow.key).message == "timed out after 0.2s"  # type: ignore[union-attr]
    assert result.step(after.key).status is Status.SKIPPED  # type: ignore[union-attr]
    assert result.step(other.key).status is Status.CREATED  # type: ignore[union-attr]
    assert slow.key not in store.inventory()


def test_classify_is_the_one_place_errors_are_sorted() -> None:
    def sorted_as(exc: BaseException) -> tuple[bool, float | None]:
        verdict = classify(exc)
        return verdict.transient, verdict.retry_after

    assert sorted_as(TransientError("x", retry_after=2.0)) == (True, 2.0)
    assert sorted_as(PermanentError("x")) == (False, None)
    assert sorted_as(TimeoutError()) == (True, None)
    assert sorted_as(ConnectionRefusedError()) == (True, None)
    assert sorted_as(httpx.ReadTimeout("slow")) == (True, None)  # not a TimeoutError subclass: still transient
    assert sorted_as(ValueError("bug")) == (False, None)
    assert all(0 <= backoff_delay(n, None, 0.5, 4.0) <= min(4.0, 0.5 * 2 ** (n - 1)) for n in range(1, 8))
    assert backoff_delay(1, 3.0, 0.5, 4.0) >= 3.0


def test_unexpected_backend_errors_are_permanent_failures_with_their_type(store: StateStore) -> None:
    runtime = MemoryBackend("runtime", faults=lambda op, key: KeyError("boom") if op == "apply" else None)
    o = obj("runtime/container/a")
    _, result = converge(table(o), backends(runtime=runtime), store)
    assert result.step(o.key).message == "KeyError: 'boom'"  # type: ignore[union-attr]
    assert result.step(o.key).attempts == 1  # type: ignore[union-attr]


def test_changes_of_a_provider_without_backend_fail_and_skip_their_dependents(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    user = obj("matrix/user/alice")
    container = obj("runtime/container/alice", deps=[user.key])
    # A plan that also creates the user, applied without a matrix backend.
    plan = make_plan(desired=table(user, container), current={}, head="c1", base="", compared_against="live",
                     providers=[Provider.RUNTIME], disabled_notes={}, old_org={}, new_org={})
    result = execute(plan, table(user, container), backends(runtime=runtime), store, None, FAST)
    assert result.step(user.key).message == "provider matrix has no backend in this run"  # type: ignore[union-attr]
    assert result.step(container.key).status is Status.SKIPPED  # type: ignore[union-attr]
    assert runtime.write_calls == 0


def test_dependency_cycles_fail_instead_of_hanging(store: StateStore) -> None:
    a = obj("runtime/container/a", deps=["runtime/container/b"])
    b = obj("runtime/container/b", deps=["runtime/container/a"])
    c = obj("runtime/container/c")
    _, result = converge(table(a, b, c), backends(runtime=MemoryBackend("runtime")), store)
    assert result.step(a.key).status is Status.FAILED  # type: ignore[union-attr]
    assert "dependency cycle" in result.step(b.key).message  # type: ignore[union-attr]
    assert result.step(c.key).status is Status.CREATED  # type: ignore[union-attr]


def test_a_stop_request_starts_nothing_new(store: StateStore) -> None:
    stop = threading.Event()
    first = obj("runtime/container/a")
    rest = [obj(f"runtime/container/n{i}", deps=[first.key]) for i in range(3)]

    def trip(op: str, key: str) -> None:
        if key == first.key:
            stop.set()  # a newer commit arrives while the first change is in flight

    runtime = MemoryBackend("runtime", faults=trip)
    _, result = converge(table(first, *rest), backends(runtime=runtime), store, options=replace(FAST, stop=stop))
    assert result.step(first.key).status is Status.CREATED  # type: ignore[union-attr]
    assert all(result.step(o.key).status is Status.SKIPPED for o in rest)  # type: ignore[union-attr]
    assert all("pre-empted" in result.step(o.key).message for o in rest)  # type: ignore[union-attr]
    assert not result.ok


# Journal ----------------------------------------------------------------------------------------------


def test_every_step_is_journalled_before_and_after(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    old = obj("runtime/container/old")
    seed(runtime, store, old)
    bad = obj("runtime/container/bad")
    good = obj("runtime/container/good")
    runtime.faults = lambda op, key: PermanentError("nope") if key == bad.key and op == "apply" else None
    _, result = converge(table(good, bad), backends(runtime=runtime), store)
    entries = [(e.key, e.action, e.phase, e.message) for e in store.journal_entries(result.run_id)]
    assert entries.index((good.key, "create", "start", "")) < entries.index((good.key, "create", "done", "created"))
    assert entries.index((bad.key, "create", "start", "")) < entries.index((bad.key, "create", "failed", "nope"))
    assert entries.index((old.key, "delete", "start", "")) < entries.index((old.key, "delete", "done", "deleted"))
    assert store.unfinished() == []


# Verify -----------------------------------------------------------------------------------------------


def test_verify_catches_a_backend_that_reports_success_without_writing(store: StateStore) -> None:
    liar = obj("runtime/container/liar")
    honest = obj("runtime/container/honest")
    runtime = MemoryBackend("runtime", faults=lambda op, key: LIE if key == liar.key else None)
    _, result = converge(table(liar, honest), backends(runtime=runtime), store)
    assert not result.verified and not result.ok
    step = result.step(liar.key)
    assert step is not None and step.status is Status.FAILED
    assert step.message == "verify: not present after apply"
    assert result.step(honest.key).status is Status.CREATED  # type: ignore[union-attr]


def test_verify_catches_a_delete_that_did_not_happen(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    gone = obj("runtime/container/gone")
    seed(runtime, store, gone)
    runtime.faults = lambda op, key: LIE if op == "delete" else None
    _, result = converge(table(obj("runtime/container/keep")), backends(runtime=runtime), store)
    assert result.step(gone.key).message == "verify: still present after delete"  # type: ignore[union-attr]
    assert gone.key in store.inventory()  # still ours to prune next time
    assert not result.verified


def test_verify_compares_specs_where_the_store_keeps_no_hash(store: StateStore) -> None:
    runtime = MemoryBackend("runtime", record_hash=False)
    o = obj("runtime/container/a", {"image": "x", "env": {"PASSWORD": "secret://matrix/a/password"}})
    secrets = SecretStore(store.dir / "secrets")
    plan, live = plan_live(table(o), backends(runtime=runtime), store)
    result = execute(plan, table(o), backends(runtime=runtime), store, secrets, FAST, observed=live.observed)
    assert result.ok and result.verified


def test_verify_failure_when_observing_fails(store: StateStore) -> None:
    o = obj("runtime/container/a")
    runtime = MemoryBackend("runtime")
    plan, live = plan_live(table(o), backends(runtime=runtime), store)
    runtime.faults = lambda op, key: PermanentError("list refused") if op == "list" else None
    result = execute(plan, table(o), backends(runtime=runtime), store, None, FAST, observed=live.observed)
    assert result.step(o.key).status is Status.FAILED  # type: ignore[union-attr]
    assert result.step(o.key).message == "could not verify: list refused"  # type: ignore[union-attr]
    assert not result.verified


# Prune ------------------------------------------------------------------------------------------------


def agents(n: int) -> list[ManagedObject]:
    return [obj(f"runtime/container/agent{i}", owner=f"Worker/agent{i}") for i in range(n)]


def test_the_prune_guard_refuses_a_mass_deletion_and_touches_nothing(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    seed(runtime, store, *agents(6))
    runtime.reset_counters()
    plan, result = converge(table(obj("runtime/container/new")), backends(runtime=runtime), store)
    assert plan.guard["tripped"]
    assert result.refused.startswith("prune guard: 6 agent") and "(limit 5)" in result.refused
    assert result.refused.endswith("nothing was applied (allow it with --allow-mass-delete)")
    assert not result.ok and runtime.write_calls == 0
    assert {s.status for s in result.steps} == {Status.SKIPPED}
    assert len(store.inventory()) == 6


def test_the_prune_guard_can_be_overridden(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    seed(runtime, store, *agents(6))
    _, result = converge(table(obj("runtime/container/new")), backends(runtime=runtime), store,
                         options=replace(FAST, allow_mass_delete=True))
    assert result.ok
    assert len(result.deleted) == 6 and set(runtime.ours()) == {"runtime/container/new"}


def test_an_empty_desired_state_is_never_applied_implicitly(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    seed(runtime, store, obj("runtime/container/a"))
    _, result = converge({}, backends(runtime=runtime), store)
    assert "desired state is empty" in result.refused
    assert "runtime/container/a" in runtime.ours()


def test_objects_with_prune_disabled_are_kept_and_so_is_what_they_need(store: StateStore) -> None:
    matrix = MemoryBackend("matrix")
    user = obj("matrix/user/legacy", owner="Worker/legacy")
    room = obj("matrix/room/legacy", deps=[user.key], owner="Team/legacy", prune=False)
    seed(matrix, store, user, room)
    _, result = converge(table(obj("matrix/user/keep")), backends(matrix=matrix), store)
    kept = result.step(room.key)
    assert kept is not None and kept.status is Status.UNCHANGED and "prune disabled" in kept.message
    needed = result.step(user.key)
    assert needed is not None and needed.status is Status.SKIPPED
    assert needed.message == f"kept: {room.key} still depends on it"
    assert {room.key, user.key} <= set(matrix.ours())
    assert result.ok  # keeping what is kept is not a failure


def test_objects_outside_the_inventory_are_never_touched(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    runtime.put_foreign("runtime/container/someone-else", {"image": "theirs"})
    seed(runtime, store, obj("runtime/container/mine"))
    _, result = converge(table(obj("runtime/container/other")), backends(runtime=runtime), store)
    assert result.ok
    assert runtime.objects["runtime/container/someone-else"].spec == {"image": "theirs"}
    assert ("delete", "runtime/container/someone-else") not in runtime.calls


def test_a_create_colliding_with_a_foreign_object_fails_and_leaves_it_alone(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    runtime.put_foreign("runtime/container/taken", {"image": "theirs"})
    _, result = converge(table(obj("runtime/container/taken")), backends(runtime=runtime), store)
    assert result.step("runtime/container/taken").status is Status.FAILED  # type: ignore[union-attr]
    assert runtime.objects["runtime/container/taken"].spec == {"image": "theirs"}


# Result shape -----------------------------------------------------------------------------------------


def test_run_result_to_dict_is_a_change_set(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    same = obj("runtime/container/same")
    old = obj("runtime/container/changed", {"v": 1})
    seed(runtime, store, same, old, obj("runtime/container/gone"))
    _, result = converge(table(same, obj("runtime/container/changed", {"v": 2}), obj("runtime/container/new")),
                         backends(runtime=runtime), store)
    data = result.to_dict()
    assert data["ok"] and data["verified"] and data["refused"] == ""
    assert data["counts"] == {"created": 1, "configured": 1, "unchanged": 1, "deleted": 1, "skipped": 0, "failed": 0}
    assert [s["key"] for s in data["created"]] == ["runtime/container/new"]
    assert data["configured"][0] == {"key": "runtime/container/changed", "owner": "Worker/alice", "action": "update",
                                     "message": "", "attempts": 1, "duration": data["configured"][0]["duration"]}
    assert data["unchanged"][0]["message"] == "up to date"
    assert data["deleted"][0]["action"] == "delete"


def test_options_from_settings_take_each_providers_concurrency() -> None:
    from gitops.settings.model import MatrixSettings, RuntimeSettings, Settings

    settings = Settings(runtime=RuntimeSettings(concurrency=2), matrix=MatrixSettings(concurrency=7))
    options = ApplyOptions.from_settings(settings)
    assert options.limit("runtime") == 2 and options.limit("matrix") == 7 and options.limit("storage") == 4
    forced = ApplyOptions.from_settings(settings, concurrency=16)
    assert forced.limit("runtime") == 16 and forced.limit("gateway") == 16


def test_an_object_using_an_agents_token_waits_for_the_account_that_produces_it(tmp_path: Path) -> None:
    from gitops.apply.secrets import SecretStore

    secrets = SecretStore(tmp_path / "secrets")
    store = StateStore(tmp_path / "state")
    log: list[tuple[str, str, str]] = []
    matrix = Recording("matrix", log, latency=0.01)  # the user's apply outputs the token
    storage = Recording("storage", log)
    user = replace(obj("matrix/user/fe-dev"), produces=("matrix/fe-dev/token",))
    config = obj("storage/object/agents/fe-dev/openclaw.json", {"accessToken": secret_ref("matrix/fe-dev/token")})
    _, result = converge(table(user, config), backends(matrix=matrix, storage=storage), store, secrets)
    assert result.ok, result.to_dict()  # no declared dependency, yet the token existed when it was needed
    assert position(log, "end", user.key) < position(log, "start", config.key)
    assert storage.objects[config.key].resolved["accessToken"] == secrets.get("matrix/fe-dev/token")
    store.close()


def test_progress_is_reported_once_per_change_as_it_ends(store: StateStore) -> None:
    seen: list[tuple[str, str, int, int]] = []
    desired = table(obj("runtime/container/a"), obj("runtime/container/b", deps=["runtime/container/a"]),
                    obj("runtime/container/c"))
    options = replace(FAST, progress=lambda step, done, total: seen.append((step.key, step.status.value, done, total)))
    _, result = converge(desired, backends(runtime=MemoryBackend("runtime")), store, options=options)
    assert result.ok
    assert sorted(k for k, _, _, _ in seen) == sorted(desired)
    assert [(done, total) for _, _, done, total in seen] == [(1, 3), (2, 3), (3, 3)]
    assert {status for _, status, _, _ in seen} == {"created"}
    assert [k for k, _, _, _ in seen].index("runtime/container/a") < [k for k, _, _, _ in seen].index(
        "runtime/container/b")
