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
from dataclasses import dataclass
from typing import Any

from gitops.compile.humans import Reach
from gitops.compile.identities import Chart


@dataclass(frozen=True, slots=True)
class AllowList:
    group: tuple[str, ...]  # channels.matrix.groupAllowFrom, sorted
    dm: tuple[str, ...]  # channels.matrix.dm.allowFrom, sorted


def allow_lists(chart: Chart, reach: Reach) -> dict[str, AllowList]:
    """Allow-lists by agent runtime name."""
    out: dict[str, AllowList] = {}
    manager = {chart.manager_id} if chart.manager_id else set()
    if chart.manager:  # Manager
        answers = {chart.admin, *reach.everywhere}
        answers.update(chart.id(w) for w in chart.standalone)
        answers.update(chart.id(t.leader) for t in chart.teams)
        out[chart.manager.runtime_name] = _finish(chart, answers, answers, ())
    for worker in chart.standalone:  # Standalone Workers
        answers = {*manager, chart.admin, *reach.worker(worker.name)}
        out[worker.runtime_name] = _finish(chart, answers, answers, (worker.spec.get("channelPolicy"),))
    for team in chart.teams:
        humans = team.human_members | reach.team(team.name)
        workers = {chart.id(w) for w in team.workers}
        # Leader
        lead = {*manager, chart.admin, *humans}
        if team.admin:
            lead.add(team.admin)
        policies = (team.policy, team.leader.spec.get("channelPolicy"))
        out[team.leader.runtime_name] = _finish(chart, lead | workers, lead, policies)
        # Team workers
        base = {chart.id(team.leader), team.admin or chart.admin, *humans}
        group = base | workers if team.peer_mentions else base
        for worker in team.workers:
            own = chart.id(worker)
            policies = (team.policy, worker.spec.get("channelPolicy"))
            out[worker.runtime_name] = _finish(chart, group - {own}, base, policies)  # peers, not itself
    return out


def _finish(chart: Chart, group: set[str], dm: set[str], policies: Iterable[Mapping[str, Any] | None]) -> AllowList:
    group, dm = set(group), set(dm)
    deny_group: set[str] = set()
    deny_dm: set[str] = set()
    for policy in policies:
        if not policy:
            continue
        group.update(chart.entry(e) for e in policy.get("groupAllowExtra") or ())
        dm.update(chart.entry(e) for e in policy.get("dmAllowExtra") or ())
        deny_group.update(chart.entry(e) for e in policy.get("groupDenyExtra") or ())
        deny_dm.update(chart.entry(e) for e in policy.get("dmDenyExtra") or ())
    return AllowList(tuple(sorted(group - deny_group)), tuple(sorted(dm - deny_dm)))
