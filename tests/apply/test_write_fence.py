"""The executor's write fence: a replica that does not hold the leader lease writes to no provider — not
before a step, not on a retry, not after an adapter's own fence said no — and the run ends as not leading,
with nothing journalled as failed, for the leader to converge."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import gitops.daemon.leader as leader
from backends.memory import MemoryBackend
from gitops.apply.executor import NOT_LEADING
from gitops.apply.result import Status
from gitops.apply.state import StateStore
from gitops.daemon.leader import NotLeading
from gitops.objects import ManagedObject
from gitops.providers.protocol import TransientError

from .helpers import backends, converge, obj, table

PROVIDERS = ("runtime", "matrix", "storage", "gateway")


class Fence:
    """The process's write fence as a leader election would install it; `leading` flips it."""

    def __init__(self) -> None:
        self.leading = True
        self.asked = 0
        self.lock = threading.Lock()

    def __call__(self) -> bool:
        with self.lock:
            self.asked += 1
            return self.leading


@pytest.fixture
def fence(monkeypatch: pytest.MonkeyPatch) -> Fence:
    f = Fence()
    monkeypatch.setattr(leader, "_fence", f)
    return f


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state")
    yield s
    s.close()


def _org() -> dict[str, ManagedObject]:
    """One object per provider, each depending on the previous one (a chain across providers)."""
    objects = []
    previous: tuple[str, ...] = ()
    for i, provider in enumerate(PROVIDERS):
        key = f"{provider}/thing/t{i}"
        objects.append(obj(key, {"v": i}, deps=previous))
        previous = (key,)
    return table(*objects)


def _backends() -> dict[str, MemoryBackend]:
    return {p: MemoryBackend(p) for p in PROVIDERS}


def test_a_replica_that_does_not_lead_writes_to_no_provider(fence: Fence, store: StateStore) -> None:
    fence.leading = False
    memory = _backends()
    desired = _org()
    _, run = converge(desired, backends(**memory), store)
    assert {p: b.write_calls for p, b in memory.items()} == dict.fromkeys(PROVIDERS, 0)
    assert run.refused == NOT_LEADING and not run.ok and not run.verified
    assert {s.status for s in run.steps} == {Status.SKIPPED}
    assert all(s.message == NOT_LEADING for s in run.steps)
    assert store.inventory_keys() == [] and store.journal_entries() == []


def test_losing_the_lease_mid_run_stops_every_later_write(fence: Fence, store: StateStore) -> None:
    memory = _backends()

    def lose_after_first_write(op: str, subject: str) -> None:
        if op == "apply":
            fence.leading = False  # the lease is lost while this write is in flight: it completes, nothing after
        return None

    memory["runtime"].faults = lose_after_first_write
    _, run = converge(_org(), backends(**memory), store)
    assert memory["runtime"].write_calls == 1
    assert sum(b.write_calls for p, b in memory.items() if p != "runtime") == 0
    statuses = {s.key: s.status for s in run.steps}
    assert statuses.pop("runtime/thing/t0") is Status.CREATED
    assert set(statuses.values()) == {Status.SKIPPED} and run.refused == NOT_LEADING
    assert not any(e.phase == "failed" for e in store.journal_entries())
    # The fenced run verified nothing: the runtime was observed once, to plan, like every other provider.
    lists = {p: sum(1 for c in b.calls if c[0] == "list") for p, b in memory.items()}
    assert len(set(lists.values())) == 1, lists


def test_a_retry_is_a_write_and_is_fenced_too(fence: Fence, store: StateStore) -> None:
    memory = _backends()
    attempts: list[str] = []

    def transient_then_lose(op: str, subject: str) -> BaseException | None:
        if op == "apply" and subject == "matrix/thing/t1" and fence.leading and not attempts:
            attempts.append(subject)
            fence.leading = False
            return TransientError("the homeserver is busy")
        return None

    memory["matrix"].faults = transient_then_lose
    _, run = converge(_org(), backends(**memory), store)
    tries = [c for c in memory["matrix"].calls if c == ("apply", "matrix/thing/t1")]
    assert attempts and len(tries) == 1, "the step was retried after the lease was lost"
    step = run.step("matrix/thing/t1")
    assert step is not None and step.status is Status.SKIPPED and step.message == NOT_LEADING
    # Not journalled as failed: it stays in flight, and the next run closes it as interrupted.
    assert [(e.key, e.phase) for e in store.unfinished()] == [("matrix/thing/t1", "start")]
    assert not any(e.phase == "failed" for e in store.journal_entries())
    fence.leading = True
    _, again = converge(_org(), backends(**memory), store, head="c2")
    assert again.ok and again.resumed == ("matrix/thing/t1",)
    assert {s.key: s.status for s in again.steps if s.status is not Status.UNCHANGED} == {
        "matrix/thing/t1": Status.CREATED, "storage/thing/t2": Status.CREATED, "gateway/thing/t3": Status.CREATED}


def test_an_adapters_own_fence_is_not_retried_or_failed(fence: Fence, store: StateStore) -> None:
    memory = _backends()
    raised: list[str] = []

    def adapter_fenced(op: str, subject: str) -> BaseException | None:
        if op == "apply" and subject == "storage/thing/t2":
            raised.append(subject)
            return NotLeading("this replica does not hold the leader lease (any more): the write was not made")
        return None

    memory["storage"].faults = adapter_fenced
    _, run = converge(_org(), backends(**memory), store)
    assert raised == ["storage/thing/t2"]  # one attempt, although NotLeading is a TransientError
    step = run.step("storage/thing/t2")
    assert step is not None and step.status is Status.SKIPPED and run.refused == NOT_LEADING
    dependent = run.step("gateway/thing/t3")
    assert dependent is not None and dependent.status is Status.SKIPPED
    assert memory["gateway"].write_calls == 0


def test_with_no_election_the_fence_is_open_and_cheap(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader, "_fence", None)
    memory = _backends()
    _, run = converge(_org(), backends(**memory), store)
    assert run.ok and not run.refused
    assert sum(b.write_calls for b in memory.values()) == len(PROVIDERS)


def test_the_fence_is_asked_before_every_write(fence: Fence, store: StateStore) -> None:
    memory = _backends()
    _, run = converge(_org(), backends(**memory), store)
    assert run.ok
    writes = sum(b.write_calls for b in memory.values())
    assert fence.asked >= writes > 0
