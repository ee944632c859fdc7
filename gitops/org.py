"""The org chart as values: validated resources by kind, and the agents they declare."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gitops import ANNOTATION_PREFIX, KINDS


class Role(StrEnum):
    MANAGER = "manager"
    STANDALONE = "standalone"
    LEADER = "team_leader"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Resource:
    """One declared resource and where it was declared."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    annotations: Mapping[str, str]
    file: str
    index: int
    line: int

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def annotation(self, key: str, default: str = "") -> str:
        return self.annotations.get(ANNOTATION_PREFIX + key, default)


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent the org declares: standalone Worker, team leader, team worker or the Manager.

    `name` is the identity key (CR name, or team member name); `runtime_name` is the Matrix localpart,
    storage prefix and consumer suffix; `path` locates the agent's spec inside its owner document.
    """

    role: Role
    name: str
    runtime_name: str
    spec: Mapping[str, Any]
    owner: Resource
    path: tuple[str | int, ...]
    team: str | None = None


@dataclass(frozen=True, slots=True)
class Org:
    """Resources by kind and name. Built only from schema-valid documents."""

    workers: Mapping[str, Resource] = field(default_factory=dict)
    teams: Mapping[str, Resource] = field(default_factory=dict)
    humans: Mapping[str, Resource] = field(default_factory=dict)
    managers: Mapping[str, Resource] = field(default_factory=dict)
    _agents: tuple[Agent, ...] | None = field(default=None, init=False, compare=False, repr=False)

    def by_kind(self, kind: str) -> Mapping[str, Resource]:
        return {"Worker": self.workers, "Team": self.teams, "Human": self.humans, "Manager": self.managers}[kind]

    def resources(self) -> Iterator[Resource]:
        for kind in KINDS:
            table = self.by_kind(kind)
            for name in sorted(table):
                yield table[name]

    def __len__(self) -> int:
        return len(self.workers) + len(self.teams) + len(self.humans) + len(self.managers)

    @property
    def manager(self) -> Resource | None:
        return self.managers[min(self.managers)] if self.managers else None

    def agents(self) -> Iterator[Agent]:
        """Every agent in a stable order: Manager, standalone Workers, then each team's leader and workers."""
        if self._agents is None:  # worked out once: every rule and the compiler walk the agents
            object.__setattr__(self, "_agents", tuple(self._declared_agents()))
        assert self._agents is not None
        return iter(self._agents)

    def _declared_agents(self) -> Iterator[Agent]:
        for res in self.managers.values():
            yield Agent(Role.MANAGER, res.name, "manager", res.spec, res, ("spec",))
        for name in sorted(self.workers):
            res = self.workers[name]
            yield Agent(Role.STANDALONE, name, res.spec.get("workerName") or name, res.spec, res, ("spec",))
        for name in sorted(self.teams):
            yield from team_agents(self.teams[name])


def team_agents(team: Resource) -> Iterator[Agent]:
    leader = team.spec.get("leader") or {}
    if isinstance(leader, Mapping) and isinstance(leader.get("name"), str):
        rt = leader.get("workerName") or leader["name"]
        yield Agent(Role.LEADER, leader["name"], rt, leader, team, ("spec", "leader"), team.name)
    for i, member in enumerate(team.spec.get("workers") or []):
        if isinstance(member, Mapping) and isinstance(member.get("name"), str):
            rt = member.get("workerName") or member["name"]
            yield Agent(Role.WORKER, member["name"], rt, member, team, ("spec", "workers", i), team.name)


def team_runtime_name(team: Resource) -> str:
    return str(team.spec.get("teamName") or team.name)


def human_localpart(human: Resource) -> str:
    return str(human.spec.get("username") or human.name)
