"""Compile (SPEC §3): the org chart and settings → the desired state, a pure and deterministic function.

Identities, rooms, allow-lists and agent files are computed whatever the settings, so an offline plan still
shows access changes and config hashes; objects are emitted only for enabled providers. One module per concern:
`identities` (names and accounts), `humans` (permission levels), `rooms`, `allowlists`, `storage`, `gateway`,
`runtime`; `units` splits the org by owner (Manager, each Worker, each Team) so that `cache` can reuse the
result of every unit whose inputs did not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gitops.compile.access import AccessReport
from gitops.compile.cache import CompileCache
from gitops.compile.gateway import grant_objects, unserved
from gitops.compile.humans import EMPTY, Reach, reach
from gitops.compile.identities import Chart, account_keys, human_users
from gitops.compile.storage import shared_storage, storage_users
from gitops.compile.units import (
    ManagerScope,
    Scope,
    Shared,
    TeamScope,
    UnitResult,
    Unkeyable,
    WorkerScope,
    room_members,
)
from gitops.gcpause import paused_gc
from gitops.objects import DesiredState, ManagedObject, Provider
from gitops.org import Org
from gitops.settings.model import Settings

__all__ = ["CompileCache", "compile_org", "notes", "unit_keys"]


def compile_org(org: Org, settings: Settings, cache: CompileCache | None = None) -> DesiredState:
    """With a cache, units whose scope is unchanged are taken from it; the result is the same either way."""
    with paused_gc():
        chart, units = _units(org, settings)
        return _assemble(chart, settings, [_compiled(scope, cache) for scope in units])


def unit_keys(org: Org, settings: Settings) -> dict[str, str]:
    """`Kind/name` of every unit -> the key its result is cached under (which units a change recompiles)."""
    return {
        (scope.team.resource if isinstance(scope, TeamScope) else scope.agent.owner).ref: scope.key()
        for scope in _units(org, settings)[1]
    }


def _units(org: Org, settings: Settings) -> tuple[Chart, list[Scope]]:
    chart = Chart.of(org, settings)
    humans = reach(chart)
    accounts = account_keys(chart)
    shared = Shared.of(settings, chart.identities, humans.everywhere, accounts)
    return chart, list(scopes(chart, humans, shared, accounts))


def scopes(chart: Chart, humans: Reach, shared: Shared, accounts: Mapping[str, str]) -> Iterator[Scope]:
    """The org's units in org order: Manager, standalone Workers, Teams."""
    ids = shared.ids
    if chart.manager:
        answered = tuple(ids.id(w) for w in chart.standalone) + tuple(ids.id(t.leader) for t in chart.teams)
        yield ManagerScope(shared, chart.manager, answered)
    for worker in chart.standalone:
        granted = humans.workers.get(worker.name, EMPTY)
        yield WorkerScope(shared, worker, granted, _accounts(accounts, room_members(ids, None, worker, granted)))
    for team in chart.teams:
        granted = humans.teams.get(team.name, EMPTY)
        yield TeamScope(shared, team, granted, _accounts(accounts, room_members(ids, team, None, granted)))


def _accounts(accounts: Mapping[str, str], members: set[str]) -> dict[str, str]:
    return {m: accounts[m] for m in sorted(members) if m in accounts}


def _compiled(scope: Scope, cache: CompileCache | None) -> UnitResult:
    if cache is None:
        return scope.compile()
    try:
        key = scope.key()
    except Unkeyable:
        return scope.compile()
    found = cache.get(key)
    if found is None:
        found = scope.compile()
        cache.put(key, found)
    return found


def _assemble(chart: Chart, settings: Settings, results: list[UnitResult]) -> DesiredState:
    """The org-wide objects around the units' own, in the order the objects have always been listed."""
    enabled = settings.providers
    objects: list[ManagedObject] = []
    if Provider.MATRIX in enabled:
        objects += [o for r in results for o in r.users] + human_users(chart) + [o for r in results for o in r.rooms]
    if Provider.STORAGE in enabled:
        objects += shared_storage(settings)
        objects += [o for r in results for o in r.keeps] + [o for r in results for o in r.files]
        objects += [o for r in results for o in r.identities]
    warnings: tuple[str, ...] = ()
    if settings.gateway is not None:
        objects += [o for r in results for o in r.gateway]
        objects += grant_objects((c for r in results for c in r.consumers), settings.gateway)
        warnings = unserved((c for r in results for c in r.consumers), settings.gateway)
    if Provider.RUNTIME in enabled:
        objects += [o for r in results for o in r.containers]
    rooms = [room for r in results for room in r.members]
    ids = chart.identities
    access = AccessReport.build(
        chart.actor,
        {alias: members for alias, members, _, _ in rooms},
        {agent: (group, dm) for r in results for agent, group, dm in r.allow},
        power={alias: power for alias, _, power, _ in rooms},
        private=(alias for alias, _, _, private in rooms if private),
        admin=ids.admin,
        manager=ids.manager_id or "",
        domain=ids.domain,
    )
    return DesiredState.of(objects, enabled, access=access, notes=notes(settings), warnings=warnings)


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
