"""What the settings switch on and off, ownership, the prune guard, notes and determinism of the whole."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gitops.compile import compile_org
from gitops.objects import Provider
from gitops.settings.model import Settings, StorageSettings

from .orgs import ALL, PLAIN_S3, compiled, human, manager, org, team, worker

ACME = (manager(), worker("alice", expose=[{"port": 80}]), team("web"), human("olivia", 1))


@pytest.mark.parametrize("provider", list(Provider), ids=[p.value for p in Provider])
def test_a_disabled_provider_produces_no_objects(provider: Provider) -> None:
    off: dict[str, Any] = {provider.value: None}
    settings = replace(ALL, **off)
    state = compiled(*ACME, settings=settings)
    assert state.by_provider(provider) == []
    assert {o.provider for o in state.objects.values()} == set(Provider) - {provider}
    assert state.providers == frozenset(Provider) - {provider}
    assert f"{provider.value}: disabled (no `{provider.value}` section in settings)" in state.notes


def test_no_settings_means_no_objects_but_access_is_still_known() -> None:
    state = compiled(*ACME, settings=Settings())
    assert state.objects == {}
    assert len(state.notes) == 4
    assert len(state.access) > 0


def test_dependencies_name_only_enabled_providers() -> None:
    state = compiled(worker("alice"), settings=replace(ALL, matrix=None, gateway=None))
    assert state.objects["runtime/container/hiclaw-worker-alice"].depends_on == (
        "storage/object/agents/alice/openclaw.json",
        "storage/user/alice",
    )


def test_notes_say_when_storage_users_are_skipped() -> None:
    assert "storage: users and policies skipped (storage.admin_api is off)" in compiled(settings=PLAIN_S3).notes
    assert compiled(settings=replace(ALL, storage=StorageSettings(admin_api=True))).notes == ()


def test_owners_are_org_resources_or_org() -> None:
    state = compiled(*ACME)
    owners = {o.owner for o in state.objects.values()}
    assert owners == {"Manager/default", "Worker/alice", "Team/web", "Human/olivia", "org"}
    assert state.objects["gateway/ai-route-grant/default-ai-route:worker-alice"].owner == "Worker/alice"
    assert state.objects["storage/bucket/hiclaw-storage"].owner == "org"
    assert state.objects["runtime/container/hiclaw-worker-dev"].owner == "Team/web"


def test_prune_disabled_marks_every_object_of_its_owner() -> None:
    state = compiled(worker("alice", {"prune": "disabled"}, expose=[{"port": 80}]), worker("bob"))
    guarded = {k for k, o in state.objects.items() if not o.prune}
    assert guarded == {k for k, o in state.objects.items() if o.owner == "Worker/alice"}
    assert "runtime/container/hiclaw-worker-alice" in guarded and "matrix/room/hiclaw-worker-alice" in guarded


def test_objects_are_sorted_by_key() -> None:
    state = compiled(*ACME)
    assert list(state.objects) == sorted(state.objects)


def test_compiling_is_pure() -> None:
    chart = org(*ACME)
    assert compile_org(chart, ALL) == compile_org(chart, ALL)
