"""The live baseline: ours only, clean when hashes match, drift as a diff, adoption, and sleeping agents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.memory import RUNTIME_TRAITS, MemoryBackend
from gitops.apply.observe import ObserveError, baseline_object, live_from, observe_live, spec_matches
from gitops.apply.state import StateStore
from gitops.compile.access import AccessReport, to_state
from gitops.objects import ManagedObject, Provider
from gitops.plan.baseline import ACCESS_SNAPSHOT, LAST_COMMIT, ORG_SNAPSHOT
from gitops.plan.model import Action, fingerprint
from gitops.providers.protocol import Observed, PermanentError

from .helpers import backends, obj, plan_live, table


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state")
    yield s
    s.close()


def container(name: str, state: str = "Running", enforce: bool = False, image: str = "img") -> ManagedObject:
    return obj(f"runtime/container/{name}", {"image": image, "state": state, "enforce_state": enforce})


def test_the_baseline_holds_inventory_objects_that_are_observed(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    here, gone = container("here"), container("gone")
    runtime.put(here)
    store.record(here)
    store.record(gone)  # deleted behind our back: absent from the baseline, so the plan re-creates it
    runtime.put_foreign("runtime/container/theirs", {"image": "x"})
    store.put_meta(ORG_SNAPSHOT, {"Worker/here": {"model": "m"}})
    report = AccessReport.build("@bot:d", {"#room": ["@a:d", "@b:d"]}, {})
    store.put_meta(ACCESS_SNAPSHOT, to_state(report))
    store.put_meta(LAST_COMMIT, "abc123")
    base = observe_live(backends(runtime=runtime), store).baseline
    assert base.kind == "live" and base.label == "abc123"
    assert dict(base.objects) == {here.key: here}
    assert base.org == {"Worker/here": {"model": "m"}}
    assert base.access == report
    plan, _ = plan_live(table(here, gone), backends(runtime=runtime), store)
    assert {c.key: c.action for c in plan.changes} == {here.key: Action.NOOP, gone.key: Action.CREATE}
    assert plan.fingerprint == fingerprint(base.objects)


def test_drift_shows_as_a_diff_of_the_observed_spec(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    applied = container("a", image="v1")
    store.record(applied)
    runtime.put(container("a", image="edited-by-hand"))  # someone changed it: another hash
    plan, _ = plan_live(table(applied), backends(runtime=runtime), store)
    (change,) = plan.changes
    assert change.action is Action.REPLACE  # image forces re-creation
    assert [(d.path, d.old, d.new) for d in change.diff] == [("image", "edited-by-hand", "v1")]
    assert change.owner == applied.owner


def test_a_sleeping_agent_is_not_drift_unless_its_state_is_enforced(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    relaxed, strict = container("relaxed"), container("strict", enforce=True)
    for o in (relaxed, strict):
        store.record(o)
        # The agent stopped itself: the labels (and so the recorded hash) are those we applied.
        runtime.put(ManagedObject(o.provider, o.type, o.name, {**o.spec, "state": "Sleeping"}, o.owner),
                    recorded_hash=o.hash)
    plan, _ = plan_live(table(relaxed, strict), backends(runtime=runtime), store)
    actions = {c.key: c for c in plan.changes}
    assert actions[relaxed.key].action is Action.NOOP
    assert actions[strict.key].action is Action.UPDATE
    assert [(d.path, d.old, d.new) for d in actions[strict.key].diff] == [("state", "Sleeping", "Running")]


def test_a_sleeping_agent_in_a_store_without_hashes(store: StateStore) -> None:
    relaxed = container("relaxed")
    seen = Observed(relaxed.key, {**relaxed.spec, "state": "Sleeping"}, None)
    assert baseline_object(relaxed, seen, RUNTIME_TRAITS["container"]) is relaxed
    strict = container("strict", enforce=True)
    seen = Observed(strict.key, {**strict.spec, "state": "Sleeping"}, None)
    assert baseline_object(strict, seen, RUNTIME_TRAITS["container"]).spec["state"] == "Sleeping"


def test_an_object_created_but_not_recorded_is_adopted_not_duplicated(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    desired = container("half")
    runtime.put(desired)  # the create happened; the run died before the inventory record
    state = observe_live(backends(runtime=runtime), store, desired=table(desired))
    assert state.adopted == frozenset({desired.key})
    assert state.baseline.objects[desired.key] == desired
    plan, _ = plan_live(table(desired), backends(runtime=runtime), store)
    assert [c.action for c in plan.changes] == [Action.NOOP]


def test_undeclared_objects_with_our_label_are_pruned_only_if_our_journal_started_them(store: StateStore) -> None:
    runtime = MemoryBackend("runtime")
    ours, unknown = container("ours"), container("unknown")
    runtime.put(ours)
    runtime.put(unknown)
    store.journal("run-1", ours.key, "create", "start")
    plan, _ = plan_live(table(container("keep")), backends(runtime=runtime), store)
    actions = {c.key: c for c in plan.changes}
    assert actions[ours.key].action is Action.DELETE
    assert actions[unknown.key].action is Action.NOOP and "prune disabled" in actions[unknown.key].reason


def test_disabled_providers_are_neither_observed_nor_in_the_baseline(store: StateStore) -> None:
    runtime, matrix = MemoryBackend("runtime"), MemoryBackend("matrix")
    user = obj("matrix/user/a")
    matrix.put(user)
    store.record(user)
    base = observe_live(backends(runtime=runtime, matrix=matrix), store, desired_providers=[Provider.RUNTIME]).baseline
    assert dict(base.objects) == {}
    assert matrix.list_calls == 0


def test_observation_lists_once_per_type_and_failures_name_the_provider(store: StateStore) -> None:
    matrix = MemoryBackend("matrix", types=("user", "room"))
    observe_live(backends(matrix=matrix), store, desired=table(obj("matrix/user/a"), obj("matrix/room/r")))
    assert matrix.calls == [("list", "user"), ("list", "room")] and matrix.write_calls == 0
    matrix.faults = lambda op, key: PermanentError("401 unauthorised") if op == "list" else None
    with pytest.raises(ObserveError, match="cannot observe matrix: PermanentError: 401 unauthorised"):
        observe_live(backends(matrix=matrix), store)


def test_live_from_needs_no_backend(store: StateStore) -> None:
    a = obj("gateway/consumer/a")
    store.record(a)
    state = live_from({Provider.GATEWAY: {a.key: Observed(a.key, a.spec, a.hash)}}, store)
    assert state.baseline.objects == {a.key: a} and state.providers == frozenset({Provider.GATEWAY})


def test_spec_matching_ignores_what_secrets_hide() -> None:
    desired = {"env": {"A": "1", "KEY": "secret://gateway/a/key"}, "image": "x"}
    assert spec_matches(desired, {"env": {"A": "1"}, "image": "x"})
    assert spec_matches(desired, {"env": {"A": "1", "KEY": "whatever"}, "image": "x"})
    assert not spec_matches(desired, {"env": {"A": "2"}, "image": "x"})
    assert not spec_matches(desired, {"env": {"A": "1", "EXTRA": "y"}, "image": "x"})
    assert spec_matches({"state": "Running"}, {"state": "Sleeping"}, ignore=["state"])
