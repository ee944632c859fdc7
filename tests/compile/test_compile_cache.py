"""The compile cache: a warm compile is the cold compile, object for object, and a change of any input
recompiles exactly the units whose scope holds that input — no more (wasted work), no fewer (stale objects)."""

from __future__ import annotations

import datetime
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gitops.compile import CompileCache, compile_org, unit_keys
from gitops.compile.units import code_digest
from gitops.objects import DesiredState
from gitops.org import Resource
from gitops.settings.model import MatrixSettings, Settings, SourceSettings

from .orgs import ALL, human, manager, member, org, team, worker
from .test_compile_properties import SETTINGS, orgs


def assert_same(warm: DesiredState, cold: DesiredState) -> None:
    """Object for object: same keys in the same order, equal objects with equal hashes, same report and notes."""
    assert list(warm.objects) == list(cold.objects)
    for key, obj in cold.objects.items():
        other = warm.objects[key]
        assert (other, other.hash, other.key) == (obj, obj.hash, obj.key), key
    assert warm.access == cold.access
    assert warm.access.entries == cold.access.entries
    assert (warm.notes, warm.providers) == (cold.notes, cold.providers)


@settings(max_examples=80, deadline=None)
@given(before=orgs(), after=orgs(), first=SETTINGS, then=SETTINGS)
def test_a_warm_compile_is_the_cold_compile(
    before: list[Resource], after: list[Resource], first: Settings, then: Settings
) -> None:
    # Random orgs share names (w0, t0, h0 ...), so `after` reuses some of `before`'s units and changes others.
    cache = CompileCache()
    assert_same(compile_org(org(*before), first, cache), compile_org(org(*before), first))
    assert_same(compile_org(org(*after), then, cache), compile_org(org(*after), then))
    misses = cache.misses
    assert_same(compile_org(org(*after), then, cache), compile_org(org(*after), then))
    assert cache.misses == misses  # the second time, every unit came from the cache


@settings(max_examples=40, deadline=None)
@given(resources=orgs(), data=st.data())
def test_changing_one_resource_recompiles_only_what_it_reaches(resources: list[Resource], data: st.DataObject) -> None:
    if not resources:
        return
    changed = data.draw(st.sampled_from(resources))
    edited = replace(changed, spec={**changed.spec, "description": "edited"})
    after = [edited if r is changed else r for r in resources]
    cache = CompileCache()
    compile_org(org(*resources), ALL, cache)
    misses = cache.misses
    assert_same(compile_org(org(*after), ALL, cache), compile_org(org(*after), ALL))
    # A description reaches no other unit: at most the edited resource's own unit is compiled again.
    assert cache.misses - misses <= 1


# Which units a change recompiles ------------------------------------------------------------------------

BASE = [
    manager(),
    worker("w1"),
    worker("w2"),
    team("t1", leader="t1-lead", workers=("t1-a", "t1-b"), admin={"name": "h2"}),
    team("t2", leader="t2-lead", workers=("t2-a",)),
    human("h1", 1),
    human("h2", 2, accessibleTeams=["t1"], accessibleWorkers=["w1"]),
    human("h3", 3, accessibleWorkers=["w2"]),
]
EVERY_UNIT = {"Manager/default", "Worker/w1", "Worker/w2", "Team/t1", "Team/t2"}


def recompiled(after: list[Resource], before: list[Resource] = BASE, then: Settings = ALL) -> set[str]:
    """The units whose key changed, checked against what a cache really recompiles and what it produces."""
    old, new = unit_keys(org(*before), ALL), unit_keys(org(*after), then)
    changed = {unit for unit, key in new.items() if old.get(unit) != key}
    cache = CompileCache()
    compile_org(org(*before), ALL, cache)
    misses = cache.misses
    assert_same(compile_org(org(*after), then, cache), compile_org(org(*after), then))
    assert cache.misses - misses == len(changed)
    return changed


def swap(name: str, new: Resource) -> list[Resource]:
    return [new if r.name == name else r for r in BASE]


def test_nothing_changed_recompiles_nothing() -> None:
    assert recompiled(list(BASE)) == set()


def test_a_team_member_edit_recompiles_its_team_only() -> None:
    edited = team("t1", leader="t1-lead", workers=("t1-a", member("t1-b", soul="Careful.")), admin={"name": "h2"})
    assert recompiled(swap("t1", edited)) == {"Team/t1"}


def test_a_worker_added_to_a_team_recompiles_that_team_only() -> None:
    grown = team("t2", leader="t2-lead", workers=("t2-a", "t2-new"))
    assert recompiled(swap("t2", grown)) == {"Team/t2"}


def test_a_worker_model_change_recompiles_that_worker_only() -> None:
    assert recompiled(swap("w1", worker("w1", model="glm-5"))) == {"Worker/w1"}


def test_a_new_runtime_name_also_reaches_the_manager_that_answers_it() -> None:
    assert recompiled(swap("w1", worker("w1", workerName="w1-renamed"))) == {"Worker/w1", "Manager/default"}


def test_a_new_team_reaches_the_manager_that_answers_its_leader() -> None:
    assert recompiled([*BASE, team("t3", leader="t3-lead")]) == {"Team/t3", "Manager/default"}


def test_granting_a_team_recompiles_that_team_only() -> None:
    widened = human("h2", 2, accessibleTeams=["t1", "t2"], accessibleWorkers=["w1"])
    assert recompiled(swap("h2", widened)) == {"Team/t2"}


def test_a_humans_own_account_fields_recompile_no_unit() -> None:
    assert recompiled(swap("h3", human("h3", 3, accessibleWorkers=["w2"], displayName="Harriet"))) == set()


def test_a_human_with_an_existing_account_changes_the_units_that_see_it() -> None:
    external = human("h3", 3, {"matrix-user-id": "@harriet:example.org"}, accessibleWorkers=["w2"])
    assert recompiled(swap("h3", external)) == {"Worker/w2"}


def test_a_level_one_human_reaches_every_unit() -> None:
    assert recompiled(swap("h1", human("h1", 2))) == EVERY_UNIT


def test_the_manager_reaches_every_unit() -> None:
    assert recompiled([r for r in BASE if r.kind != "Manager"]) == EVERY_UNIT - {"Manager/default"}


def test_settings_reach_every_unit() -> None:
    renamed = replace(ALL, matrix=MatrixSettings(server_name="chat.example.org", actor_user="hiclaw-bot"))
    assert recompiled(list(BASE), then=renamed) == EVERY_UNIT
    # Settings are one input of every unit, whole: even a field the compiler does not read invalidates.
    assert recompiled(list(BASE), then=replace(ALL, source=SourceSettings(poll_interval=5))) == EVERY_UNIT


# The cache itself ---------------------------------------------------------------------------------------


def test_a_saved_cache_serves_another_process(tmp_path: Path) -> None:
    path = tmp_path / "compile-cache.pickle"
    cache = CompileCache(path)
    cold = compile_org(org(*BASE), ALL, cache)
    cache.save()
    again = CompileCache(path)
    assert len(again) == len(EVERY_UNIT)
    assert_same(compile_org(org(*BASE), ALL, again), cold)
    assert (again.hits, again.misses) == (len(EVERY_UNIT), 0)


def test_save_keeps_only_what_was_used(tmp_path: Path) -> None:
    path = tmp_path / "compile-cache.pickle"
    cache = CompileCache(path)
    compile_org(org(*BASE), ALL, cache)
    cache.save()
    cache = CompileCache(path)
    compile_org(org(worker("w1")), ALL, cache)  # one unit, and a different scope (no Manager, no humans)
    cache.save()
    assert len(CompileCache(path)) == 1


def test_a_damaged_or_foreign_cache_is_only_a_slower_run(tmp_path: Path) -> None:
    path = tmp_path / "compile-cache.pickle"
    path.write_bytes(b"not a pickle")
    assert len(CompileCache(path)) == 0
    cache = CompileCache(path)
    compile_org(org(*BASE), ALL, cache)
    cache.save()
    version, code, entries = pickle.loads(path.read_bytes())
    assert code == code_digest() and len(entries) == len(EVERY_UNIT)
    path.write_bytes(pickle.dumps((version, "another compiler", entries)))
    assert len(CompileCache(path)) == 0  # results of another compiler's source are never reused


def test_a_scope_without_canonical_form_is_compiled_not_cached() -> None:
    dated: dict[str, Any] = {"env": {"SINCE": datetime.date(2024, 1, 31)}}  # YAML reads 2024-01-31 as a date
    resources = [manager(), worker("w1", **dated), worker("w2")]
    cache = CompileCache()
    assert_same(compile_org(org(*resources), ALL, cache), compile_org(org(*resources), ALL))
    assert len(cache) == 2  # the Manager and w2; w1 is compiled every time
