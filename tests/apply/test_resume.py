"""A run killed mid-apply is resumed by the next one and converges with no duplicates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from backends.memory import Crash, MemoryBackend
from gitops.apply.executor import execute
from gitops.apply.observe import observe_live
from gitops.apply.result import Status
from gitops.apply.state import StateStore
from gitops.providers.protocol import Outcome

from .helpers import FAST, backends, converge, obj, plan_live, table

ONE_AT_A_TIME = replace(FAST, default_concurrency=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state")
    yield s
    s.close()


def crash_once(target: str, written: bool) -> object:
    fired: list[bool] = []

    def inject(op: str, key: str) -> BaseException | None:
        if op == "apply" and key == target and not fired:
            fired.append(True)
            return Crash(written=written)
        return None

    return inject


USER = obj("matrix/user/alice")
ROOM = obj("matrix/room/alice", deps=[USER.key])
OTHER = obj("matrix/user/bob")
DESIRED = table(USER, ROOM, OTHER)


@pytest.mark.parametrize("written", [True, False], ids=["died-after-write", "died-before-write"])
def test_a_crash_mid_apply_is_resumed_by_replanning(store: StateStore, written: bool) -> None:
    matrix = MemoryBackend("matrix", faults=crash_once(USER.key, written))  # type: ignore[arg-type]
    with pytest.raises(Crash):
        converge(DESIRED, backends(matrix=matrix), store, options=ONE_AT_A_TIME)
    unfinished = store.unfinished()
    assert [(e.key, e.action) for e in unfinished] == [(USER.key, "create")]
    assert USER.key not in store.inventory()
    assert (USER.key in matrix.ours()) is written

    _, result = converge(DESIRED, backends(matrix=matrix), store, options=ONE_AT_A_TIME)
    assert result.ok, result.to_dict()
    assert result.resumed == (USER.key,)
    assert store.unfinished() == []
    user = result.step(USER.key)
    assert user is not None
    if written:  # found with our label and the hash we meant: adopted, not applied again
        assert user.status is Status.UNCHANGED and user.action == "noop"
    else:
        assert user.status is Status.CREATED
    assert set(matrix.ours()) == set(DESIRED)
    assert set(store.inventory()) == set(DESIRED)
    assert matrix.calls.count(("apply", USER.key)) == (1 if written else 2)
    again, _ = plan_live(DESIRED, backends(matrix=matrix), store)
    assert not again.has_changes


def test_reapplying_the_same_plan_after_a_crash_adopts_the_half_done_create(store: StateStore) -> None:
    matrix = MemoryBackend("matrix", faults=crash_once(USER.key, written=True))  # type: ignore[arg-type]
    plan, live = plan_live(DESIRED, backends(matrix=matrix), store)
    with pytest.raises(Crash):
        execute(plan, DESIRED, backends(matrix=matrix), store, None, ONE_AT_A_TIME, observed=live.observed)
    # The same plan again (as `apply plan.json` would, were it still fresh): create is asked for once more.
    result = execute(plan, DESIRED, backends(matrix=matrix), store, None, ONE_AT_A_TIME)
    assert result.ok, result.to_dict()
    assert matrix.calls.count(("apply", USER.key)) == 2
    user = result.step(USER.key)
    assert user is not None and user.action == "create" and user.status is Status.UNCHANGED
    assert len([k for k in matrix.objects if k == USER.key]) == 1
    assert set(store.inventory()) == set(DESIRED)


def test_the_backend_adopts_on_create_with_no_duplicate() -> None:
    matrix = MemoryBackend("matrix")
    assert matrix.apply(USER, "create", None, lambda s: s).outcome is Outcome.CREATED
    assert matrix.apply(USER, "create", None, lambda s: s).outcome is Outcome.UNCHANGED
    changed = obj(USER.key, {"v": 2})
    assert matrix.apply(changed, "create", None, lambda s: s).outcome is Outcome.CONFIGURED
    assert list(matrix.ours()) == [USER.key]
    assert matrix.ours()[USER.key].recorded_hash == changed.hash


def test_a_crash_during_delete_is_finished_by_the_next_run(store: StateStore) -> None:
    matrix = MemoryBackend("matrix")
    gone = obj("matrix/user/gone")
    matrix.put(gone)
    store.record(gone)
    matrix.faults = lambda op, key: Crash(written=True) if op == "delete" and key == gone.key else None
    with pytest.raises(Crash):
        converge(table(OTHER), backends(matrix=matrix), store, options=ONE_AT_A_TIME)
    assert gone.key in store.inventory() and gone.key not in matrix.ours()  # deleted, not yet forgotten
    matrix.faults = None
    _, result = converge(table(OTHER), backends(matrix=matrix), store, options=ONE_AT_A_TIME)
    assert result.ok
    assert set(store.inventory()) == {OTHER.key}  # the stale entry is settled: gone and no longer declared
    state = observe_live(backends(matrix=matrix), store)
    assert set(state.baseline.objects) == {OTHER.key}
