"""Properties of the compiler over random orgs: deterministic, order-blind, closed dependencies, exact diffs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gitops.compile import compile_org
from gitops.compile.access import diff
from gitops.org import Resource
from gitops.settings.model import Settings

from .orgs import ADMIN_API, ALL, human, manager, member, org, team, worker

MODELS = st.sampled_from(["qwen3.6-plus", "claude-sonnet-4-6", "glm-5"])
RUNTIMES = st.sampled_from(["openclaw", "copaw", "hermes"])
SETTINGS = st.sampled_from([ALL, ADMIN_API, Settings(), Settings(storage=ADMIN_API.storage, runtime=ALL.runtime)])
GATEWAY_MCP = {"name": "github", "url": "http://aigw-local.hiclaw.io:8080/mcp-servers/github/mcp"}
EXTERNAL_MCP = {"name": "desk", "url": "https://mcp.example.com/desk", "transport": "sse"}


@st.composite
def orgs(draw: st.DrawFn) -> list[Resource]:
    workers = [f"w{i}" for i in range(draw(st.integers(0, 3)))]
    teams = [f"t{i}" for i in range(draw(st.integers(0, 2)))]
    humans = [f"h{i}" for i in range(draw(st.integers(0, 3)))]
    crews = {t: [f"{t}-m{j}" for j in range(draw(st.integers(0, 3)))] for t in teams}
    names = workers + humans + [f"{t}-lead" for t in teams] + [m for c in crews.values() for m in c]
    entries = st.lists(st.sampled_from([*names, "admin", "manager", "@x:partner.org"]), max_size=3)
    policy = st.fixed_dictionaries(
        {}, optional={k: entries for k in ("groupAllowExtra", "groupDenyExtra", "dmAllowExtra", "dmDenyExtra")}
    )

    def agent_spec() -> dict[str, Any]:
        spec: dict[str, Any] = {"channelPolicy": draw(policy), "soul": draw(st.sampled_from(["", "Kind."]))}
        if draw(st.booleans()):
            spec["model"] = draw(MODELS)
        spec["mcpServers"] = draw(
            st.lists(st.sampled_from([GATEWAY_MCP, EXTERNAL_MCP]), max_size=2, unique_by=lambda s: s["name"])
        )
        spec["state"] = draw(st.sampled_from(["Running", "Sleeping", "Stopped"]))
        return spec

    out: list[Resource] = []
    if draw(st.booleans()):
        out.append(manager(mcpServers=draw(st.lists(st.just(GATEWAY_MCP), max_size=1))))
    for name in workers:
        expose = draw(
            st.lists(st.sampled_from([{"port": 80}, {"port": 8000}]), max_size=2, unique_by=lambda e: e["port"])
        )
        out.append(worker(name, runtime=draw(RUNTIMES), expose=expose, **agent_spec()))
    for t in teams:
        extra: dict[str, Any] = {"peerMentions": draw(st.booleans()), "channelPolicy": draw(policy)}
        with_admin = draw(st.booleans())
        if humans and with_admin:
            extra["admin"] = {"name": draw(st.sampled_from(humans))}
        extra["humanMembers"] = (
            [{"name": h} for h in draw(st.lists(st.sampled_from(humans), unique=True))] if humans else []
        )
        crew = tuple(member(m, runtime=draw(RUNTIMES), **agent_spec()) for m in crews[t])
        out.append(team(t, leader=member(f"{t}-lead", **agent_spec()), workers=crew, **extra))
    for h in humans:
        level = draw(st.integers(1, 3))
        access: dict[str, Any] = {}
        if level == 2 and teams:
            access["accessibleTeams"] = draw(st.lists(st.sampled_from(teams), unique=True))
        if level > 1 and workers:
            access["accessibleWorkers"] = draw(st.lists(st.sampled_from(workers), unique=True))
        out.append(human(h, level, **access))
    return out


@settings(max_examples=60, deadline=None)
@given(resources=orgs(), config=SETTINGS, data=st.data())
def test_compiling_is_deterministic_and_blind_to_declaration_order(
    resources: list[Resource], config: Settings, data: st.DataObject
) -> None:
    first = compile_org(org(*resources), config)
    assert compile_org(org(*resources), config) == first
    shuffled = data.draw(st.permutations(resources))
    again = compile_org(org(*shuffled), config)
    assert again == first
    assert list(again.objects) == sorted(first.objects)
    assert again.access.entries == first.access.entries


@settings(max_examples=60, deadline=None)
@given(resources=orgs(), config=SETTINGS)
def test_every_dependency_exists_in_the_desired_state(resources: list[Resource], config: Settings) -> None:
    state = compile_org(org(*resources), config)
    for obj in state.objects.values():
        assert set(obj.depends_on) <= state.objects.keys(), obj.key


@settings(max_examples=40, deadline=None)
@given(before=orgs(), after=orgs())
def test_access_diff_applied_to_the_old_report_gives_the_new_one(before: list[Resource], after: list[Resource]) -> None:
    old, new = compile_org(org(*before), ALL).access, compile_org(org(*after), ALL).access
    change = diff(old, new)

    def applied(sets: Mapping[str, frozenset[str]], changes: dict[str, Any]) -> dict[str, frozenset[str]]:
        out = dict(sets)
        for key, c in changes.items():
            out[key] = (out.get(key, frozenset()) - c.removed) | c.added
        return {k: v for k, v in out.items() if v}

    def nonempty(sets: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        return {k: v for k, v in sets.items() if v}

    assert applied(old.rooms, {r.room: r.members for r in change.rooms}) == nonempty(new.rooms)
    assert applied(old.power, {r.room: r.power for r in change.rooms}) == nonempty(new.power)
    assert applied(old.group, {a.agent: a.group for a in change.agents}) == nonempty(new.group)
    assert applied(old.dm, {a.agent: a.dm for a in change.agents}) == nonempty(new.dm)
    for p in change.principals:  # each summary counts exactly the set changes that name it
        assert p.rooms_gained.count == sum(p.id in r.members.added for r in change.rooms)
        assert p.rooms_lost.count == sum(p.id in r.members.removed for r in change.rooms)
        assert p.reaches_gained.count == sum(p.id in (a.group.added | a.dm.added) and a.agent != p.id
                                             for a in change.agents)
    assert not diff(new, new)
