"""Where each human reaches (SPEC §3.3 permission levels), computed once for the rooms and the allow-lists.

Level 1 reaches every shared room and every agent; level 2 the teams in `accessibleTeams` and the Workers in
`accessibleWorkers`; level 3 only those Workers. Access lists of level-1 humans and `accessibleTeams` of
level-3 humans are ignored (validation reports them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gitops.compile.identities import Chart

EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Reach:
    everywhere: frozenset[str]  # level-1 humans
    teams: Mapping[str, frozenset[str]]  # Team name -> level-2 humans granted that team
    workers: Mapping[str, frozenset[str]]  # standalone Worker name -> level-2/3 humans granted it

    def team(self, name: str) -> frozenset[str]:
        """Humans with access to a team (level 1, and level 2 with the team)."""
        return self.everywhere | self.teams.get(name, EMPTY)

    def worker(self, name: str) -> frozenset[str]:
        """Humans with access to a standalone Worker (level 1, and level 2/3 with it)."""
        return self.everywhere | self.workers.get(name, EMPTY)


def reach(chart: Chart) -> Reach:
    everywhere: set[str] = set()
    teams: dict[str, set[str]] = {}
    workers: dict[str, set[str]] = {}
    for human in chart.human_resources:
        user_id = chart.humans[human.name]
        level = human.spec.get("permissionLevel", 3)
        if level == 1:
            everywhere.add(user_id)
            continue
        if level == 2:
            for team in human.spec.get("accessibleTeams") or []:
                teams.setdefault(team, set()).add(user_id)
        for worker in human.spec.get("accessibleWorkers") or []:
            workers.setdefault(worker, set()).add(user_id)
    return Reach(
        frozenset(everywhere),
        {k: frozenset(v) for k, v in teams.items()},
        {k: frozenset(v) for k, v in workers.items()},
    )
