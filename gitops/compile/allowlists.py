"""Agent allow-lists (SPEC §3.3): whom each agent answers in groups and in DMs, then channelPolicy, deny winning.

| Agent             | Answers (group and DM)                                                 | Group only           |
|-------------------|------------------------------------------------------------------------|----------------------|
| Manager           | Admin, standalone Workers, Leaders, level-1 humans                     |                      |
| Standalone Worker | Manager (if any), Admin, humans with access to it                      |                      |
| Leader            | Manager (if any), Global Admin, Team Admin, humanMembers, team humans  | its workers          |
| Team worker       | Leader, Team Admin (else Admin), humanMembers, team humans             | peers (peerMentions) |

Then channelPolicy — the team's first, then the member's own (a standalone Worker has only its own): every
`*AllowExtra` is added, then every `*DenyExtra` removed, so a deny anywhere wins over any allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitops.compile.identities import Identities, Team
from gitops.org import Agent


@dataclass(frozen=True, slots=True)
class AllowList:
    group: tuple[str, ...]  # channels.matrix.groupAllowFrom, sorted
    dm: tuple[str, ...]  # channels.matrix.dm.allowFrom, sorted
    # The same entries as lists, for the agent's openclaw.json document; equal lists of one unit's agents
    # are one list (a team's workers mostly answer the same people). Never mutated.
    group_list: list[str] = field(default_factory=list, compare=False, repr=False)
    dm_list: list[str] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def of(cls, group: tuple[str, ...], dm: tuple[str, ...], same: dict[tuple[str, ...], list[str]]) -> AllowList:
        return cls(group, dm, same.setdefault(group, list(group)), same.setdefault(dm, list(dm)))


def manager_allow(ids: Identities, everywhere: Iterable[str], answered: Iterable[str]) -> AllowList:
    """The Manager's: Admin, level-1 humans, and `answered` (standalone Workers and Leaders)."""
    answers = {ids.admin, *everywhere, *answered}
    return _finish(ids, answers, answers, (), {})


def worker_allow(ids: Identities, worker: Agent, humans: Iterable[str]) -> AllowList:
    """A standalone Worker's; `humans` are those with access to it."""
    answers = {ids.admin, *humans}
    if ids.manager_id:
        answers.add(ids.manager_id)
    return _finish(ids, answers, answers, (worker.spec.get("channelPolicy"),), {})


def team_allow(ids: Identities, team: Team, humans: frozenset[str]) -> dict[str, AllowList]:
    """The Leader's and each team worker's, by runtime name; `humans` are those with access to the team."""
    out: dict[str, AllowList] = {}
    same: dict[tuple[str, ...], list[str]] = {}
    manager = {ids.manager_id} if ids.manager_id else set()
    humans = team.human_members | humans
    workers = {ids.id(w) for w in team.workers}
    # Leader
    lead = {*manager, ids.admin, *humans}
    if team.admin:
        lead.add(team.admin)
    policies = (team.policy, team.leader.spec.get("channelPolicy"))
    out[team.leader.runtime_name] = _finish(ids, lead | workers, lead, policies, same)
    # Team workers
    base = {ids.id(team.leader), team.admin or ids.admin, *humans}
    group = base | workers if team.peer_mentions else base
    for worker in team.workers:
        own = ids.id(worker)
        policies = (team.policy, worker.spec.get("channelPolicy"))
        out[worker.runtime_name] = _finish(ids, group - {own}, base, policies, same)  # peers, not itself
    return out


def _finish(
    ids: Identities,
    group: set[str],
    dm: set[str],
    policies: Iterable[Mapping[str, Any] | None],
    same: dict[tuple[str, ...], list[str]],
) -> AllowList:
    group, dm = set(group), set(dm)
    deny_group: set[str] = set()
    deny_dm: set[str] = set()
    for policy in policies:
        if not policy:
            continue
        group.update(ids.entry(e) for e in policy.get("groupAllowExtra") or ())
        dm.update(ids.entry(e) for e in policy.get("dmAllowExtra") or ())
        deny_group.update(ids.entry(e) for e in policy.get("groupDenyExtra") or ())
        deny_dm.update(ids.entry(e) for e in policy.get("dmDenyExtra") or ())
    return AllowList.of(tuple(sorted(group - deny_group)), tuple(sorted(dm - deny_dm)), same)
