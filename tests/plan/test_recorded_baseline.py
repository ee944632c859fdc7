"""The state baseline decodes a recorded spec only when something reads it (docs/performance.md: a no-change
plan at 10,000 team workers held every recorded `openclaw.json` decoded), and what is read is exact."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gitops import pipeline as engine
from gitops.apply.state import StateStore, org_snapshot, recorded
from gitops.objects import DesiredState, ManagedObject, RecordedObject
from gitops.pipeline import OrgRead
from gitops.plan import baseline as baselines
from gitops.plan.model import Action
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "example-org"
SETTINGS = Settings()


@pytest.fixture(scope="module")
def org() -> tuple[OrgRead, DesiredState]:
    read = engine.read_org(DirectorySource(EXAMPLE))
    assert read.ok, read.validation.diagnostics
    return read, engine.desired_state(read, SETTINGS.with_all_providers())


def applied(tmp_path: Path, read: OrgRead, objects: list[ManagedObject]) -> StateStore:
    """A state store holding what an apply of `objects` records."""
    store = StateStore(tmp_path / "state")
    with store.transaction():
        for obj in objects:
            store.record(obj, read.head)
        baselines.record_snapshots(store, read.head, org_snapshot(read.validation.org.resources()), None)
    return store


def eager(store: StateStore) -> dict[str, ManagedObject]:
    """The inventory decoded whole, as it was read before specs were left undecoded."""
    rows = sqlite3.connect(store.path).execute("SELECT object, hash FROM inventory ORDER BY key")
    return {o.key: o for o in (ManagedObject.from_dict(json.loads(text), h) for text, h in rows)}


def test_a_no_change_plan_decodes_no_recorded_spec(tmp_path: Path, org: tuple[OrgRead, DesiredState]) -> None:
    read, desired = org
    current = baselines.from_state(applied(tmp_path, read, list(desired.objects.values())))
    plan = engine.plan(read, SETTINGS, current, all_providers=True)
    assert not plan.has_changes
    assert current.objects and all(isinstance(o, RecordedObject) for o in current.objects.values())
    assert [k for k, o in current.objects.items() if isinstance(o, RecordedObject) and o.decoded] == []


def test_a_changed_object_shows_its_recorded_spec_exactly_and_only_it_is_decoded(
    tmp_path: Path, org: tuple[OrgRead, DesiredState]
) -> None:
    read, desired = org
    key = next(k for k in desired.objects if k.startswith("storage/object/") and k.endswith("/openclaw.json"))
    old = dict(desired.objects[key].spec)
    content = json.loads(json.dumps(old["content"]))
    content["channels"]["matrix"]["groupAllowFrom"] = ["@someone-else:example.org"]
    content["note"] = "ünïcode \"quoted\" ,\"spec\": ,\"type\":"  # what the row's split must not trip on
    old["content"] = content
    store = applied(tmp_path, read, [o.with_spec(old) if k == key else o for k, o in desired.objects.items()])
    current = baselines.from_state(store)

    plan = engine.plan(read, SETTINGS, current, all_providers=True)
    against_eager = engine.plan(read, SETTINGS, baselines.Baseline(
        current.kind, current.label, eager(store), current.org, current.access), all_providers=True)

    assert plan.to_dict() == against_eager.to_dict()
    change = next(c for c in plan.changes if c.action is not Action.NOOP)
    assert [c.key for c in plan.changes if c.action is not Action.NOOP] == [key]
    assert change.action is Action.UPDATE and change.before == old
    assert {d.path for d in change.diff} == {"content.channels.matrix.groupAllowFrom", "content.note"}
    assert [k for k, o in current.objects.items() if isinstance(o, RecordedObject) and o.decoded] == [key]


def test_a_recorded_object_equals_what_was_recorded(tmp_path: Path, org: tuple[OrgRead, DesiredState]) -> None:
    read, desired = org
    store = applied(tmp_path, read, list(desired.objects.values()))
    lazy, whole = store.inventory(), eager(store)
    assert list(lazy) == list(whole)
    for key, obj in lazy.items():
        assert obj.hash == whole[key].hash and obj.key == whole[key].key and obj.plain == whole[key].plain
        assert obj == whole[key] and whole[key] == obj and obj == desired.objects[key]
        assert obj.to_dict() == whole[key].to_dict()
    assert store.inventory() == lazy


def test_threads_reading_one_spec_get_one_decoded_value(tmp_path: Path, org: tuple[OrgRead, DesiredState]) -> None:
    read, desired = org
    store = applied(tmp_path, read, list(desired.objects.values()))
    obj = next(o for o in store.inventory().values() if o.key.endswith("/openclaw.json"))
    seen: list[Any] = []
    start = threading.Barrier(8)

    def read_spec() -> None:
        start.wait()
        seen.append(obj.spec)

    threads = [threading.Thread(target=read_spec) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(s is seen[0] for s in seen)
    assert seen[0] == desired.objects[obj.key].spec


def test_a_row_of_another_shape_is_decoded_whole(org: tuple[OrgRead, DesiredState]) -> None:
    _, desired = org
    obj = next(iter(desired.objects.values()))
    text = json.dumps(obj.to_dict(), indent=1)  # not the canonical form the store writes
    found = recorded(text, obj.hash)
    assert not isinstance(found, RecordedObject) and found == obj and found.hash == obj.hash
