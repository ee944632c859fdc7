"""example-org compiles to exactly the rooms and allow-lists its README promises."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gitops.compile import compile_org
from gitops.source.files import DirectorySource
from gitops.source.load import load
from gitops.validate.check import validate

from .orgs import ALL, allowed, members, power

EXAMPLE = Path(__file__).resolve().parents[2] / "example-org"
STATE = compile_org(validate(load(DirectorySource(EXAMPLE))).org, ALL)

TEAM_WORKERS = {"fe-dev", "fe-ui", "fe-qa"}
ROOMS = {
    "hiclaw-manager-default": ({"admin", "manager"}, {"admin", "manager"}),
    "hiclaw-worker-release-manager": ({"admin", "manager", "release-manager", "olivia"}, {"admin", "manager"}),
    "hiclaw-worker-docs-writer": ({"admin", "manager", "docs-writer", "olivia", "chen", "sam"}, {"admin", "manager"}),
    "hiclaw-worker-support-bot": ({"admin", "manager", "support-bot", "olivia", "lena"}, {"admin", "manager"}),
    "hiclaw-worker-kb-curator": ({"admin", "manager", "kb-curator", "olivia", "lena"}, {"admin", "manager"}),
    "hiclaw-worker-frontend-lead": ({"admin", "manager", "frontend-lead", "olivia"}, {"admin", "manager"}),
    "hiclaw-worker-data-lead": ({"admin", "manager", "data-lead", "olivia"}, {"admin", "manager"}),
    "hiclaw-team-frontend-team": (
        {"priya", "frontend-lead", *TEAM_WORKERS, "sam", "olivia"},
        {"priya", "frontend-lead"},
    ),
    "hiclaw-team-data-team": (
        {"admin", "data-lead", "etl-engineer", "data-analyst", "olivia", "chen"},
        {"admin", "data-lead"},
    ),
    **{f"hiclaw-worker-{w}": ({"frontend-lead", "priya", w}, {"priya", "frontend-lead"}) for w in TEAM_WORKERS},
    **{
        f"hiclaw-worker-{w}": ({"data-lead", "admin", w}, {"admin", "data-lead"})
        for w in ("etl-engineer", "data-analyst")
    },
    "hiclaw-leader-dm-frontend-lead": ({"priya", "frontend-lead"}, {"priya", "frontend-lead"}),
    "hiclaw-leader-dm-data-lead": ({"admin", "data-lead"}, {"admin", "data-lead"}),
}

AUDITOR = "@auditor:partner.example.org"
# agent: (answers in groups and DMs, group only, DM only)
ALLOW = {
    "manager": (
        {
            "admin",
            "release-manager",
            "docs-writer",
            "support-bot",
            "kb-curator",
            "frontend-lead",
            "data-lead",
            "olivia",
        },
        set(),
        set(),
    ),
    "release-manager": ({"manager", "admin", "olivia"}, set(), set()),
    "docs-writer": ({"manager", "admin", "olivia", "chen", "sam"}, set(), set()),
    "support-bot": ({"manager", "admin", "olivia", "lena"}, {"kb-curator"}, {"@support-oncall:partner.example.org"}),
    "kb-curator": ({"manager", "admin", "olivia", "lena"}, set(), set()),
    "frontend-lead": ({"manager", "admin", "priya", "sam", "olivia"}, TEAM_WORKERS, set()),
    **{w: ({"frontend-lead", "priya", "sam", "olivia"}, TEAM_WORKERS - {w}, set()) for w in TEAM_WORKERS},
    "data-lead": ({"manager", "admin", "olivia"}, {"etl-engineer", "data-analyst", "chen", "priya", AUDITOR}, set()),
    "etl-engineer": ({"data-lead", "admin", "olivia"}, {"chen", "priya", AUDITOR}, set()),
    "data-analyst": ({"data-lead", "admin", "olivia"}, {"chen", "priya", AUDITOR}, set()),
}


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_rooms_match_the_readme(room: str) -> None:
    assert (members(STATE, room), power(STATE, room)) == ROOMS[room]


def test_sixteen_rooms() -> None:
    assert sum(1 for o in STATE.objects.values() if o.type == "room") == len(ROOMS) == 16


@pytest.mark.parametrize("agent", sorted(ALLOW))
def test_allow_lists_match_the_readme(agent: str) -> None:
    both, group_only, dm_only = ALLOW[agent]
    assert allowed(STATE, agent) == (both | group_only, both | dm_only)


def test_object_counts() -> None:
    counts = Counter("/".join(k.split("/")[:2]) for k in STATE.objects)
    assert counts == {
        "gateway/ai-route-grant": 12,
        "gateway/consumer": 12,
        "gateway/domain": 2,
        "gateway/mcp-grant": 3,
        "gateway/route": 2,
        "gateway/service-source": 2,
        "matrix/room": 16,
        "matrix/user": 17,
        "runtime/container": 12,
        "storage/area": 12,
        "storage/bucket": 1,
        "storage/object": 43,
        "storage/user": 12,  # offline plans show identities (a user carrying its policy per agent)
    }
    assert not STATE.objects["runtime/container/hiclaw-worker-release-manager"].prune
