"""Compile (SPEC §3): the org chart and settings → the desired state, a pure and deterministic function.

Identities, rooms, allow-lists and agent files are computed whatever the settings, so an offline plan still
shows access changes and config hashes; objects are emitted only for enabled providers. One module per concern:
`identities` (names and accounts), `humans` (permission levels), `rooms`, `allowlists`, `storage`, `gateway`,
`runtime`.
"""

from __future__ import annotations

from gitops.access import AccessReport
from gitops.compile.allowlists import allow_lists
from gitops.compile.gateway import gateway_objects
from gitops.compile.humans import reach
from gitops.compile.identities import Chart, matrix_users, user_keys
from gitops.compile.rooms import alias, room_objects, rooms
from gitops.compile.runtime import container_objects
from gitops.compile.storage import agent_files, storage_objects, storage_users, stored
from gitops.objects import DesiredState, ManagedObject, Provider
from gitops.org import Org
from gitops.settings import Settings

__all__ = ["compile_org", "notes"]


def compile_org(org: Org, settings: Settings) -> DesiredState:
    chart = Chart.of(org, settings)
    humans = reach(chart)
    planned_rooms = rooms(chart, humans)
    allow = allow_lists(chart, humans)
    agents = list(chart.agents())
    # Agent files are built even with storage disabled: their hash restarts the agent when its config changes.
    files = {
        a.runtime_name: stored(settings.bucket, agent_files(chart, a, allow[a.runtime_name], settings)) for a in agents
    }
    enabled = settings.providers

    objects: list[ManagedObject] = []
    if Provider.MATRIX in enabled:
        users = matrix_users(chart)
        objects += users
        objects += room_objects(planned_rooms, chart, user_keys(users))
    if Provider.STORAGE in enabled:
        objects += storage_objects(chart, files, agents, settings)
    if settings.gateway is not None:
        objects += gateway_objects(chart, settings.gateway)
    if Provider.RUNTIME in enabled:
        objects += container_objects(chart, agents, files, settings)

    access = AccessReport.build(
        chart.actor,
        {alias(room, chart): room.members for room in planned_rooms},
        {chart.id(a): (allow[a.runtime_name].group, allow[a.runtime_name].dm) for a in agents},
    )
    return DesiredState.of(objects, enabled, access=access, notes=notes(settings))


def notes(settings: Settings) -> tuple[str, ...]:
    """What the settings leave out, one sentence each, for plans to show."""
    out = [
        f"{p.value}: disabled (no `{p.value}` section in settings)"
        for p in (Provider.RUNTIME, Provider.MATRIX, Provider.STORAGE, Provider.GATEWAY)
        if p not in settings.providers
    ]
    if settings.storage is not None and not storage_users(settings):
        out.append("storage: users and policies skipped (storage.admin_api is off)")
    return tuple(out)
