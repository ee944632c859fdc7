"""`hiclaw-gitops graph` and the topology renderers: Mermaid and DOT of people, rooms, membership and access."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gitops.cli import main
from gitops.commands.graph import dot, org_topology
from gitops.pipeline import desired_state, read_org
from gitops.settings.model import MatrixSettings, Settings
from gitops.source.files import DirectorySource
from gitops.views.mermaid import Person, Room, Topology, short_names, topology

Golden = Callable[[str, str], None]
ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "example-org"
D = "hiclaw.test"


def small() -> Topology:
    """A Manager, one standalone Worker with a level-3 human, and a team of two with a human member."""
    def u(name: str) -> str:
        return f"@{name}:{D}"

    def r(name: str) -> str:
        return f"#{name}:{D}"

    return Topology(
        people=(
            Person(u("admin"), "admin"),
            Person(u("manager"), "manager"),
            Person(u("alice"), "standalone"),
            Person(u("lead"), "leader", "web"),
            Person(u("dev"), "worker", "web"),
            Person(u("priya"), "human"),
            Person("@lena:corp.example", "human"),
        ),
        rooms=(
            Room(r("hiclaw-manager-default"), (u("admin"), u("manager"))),
            Room(r("hiclaw-worker-alice"), (u("admin"), u("alice"), u("manager"), "@lena:corp.example")),
            Room(r("hiclaw-team-web"), (u("admin"), u("dev"), u("lead"), u("priya")), "web"),
        ),
        access=(
            (u("admin"), u("manager"), r("hiclaw-manager-default")),
            (u("manager"), u("admin"), r("hiclaw-manager-default")),
            ("@lena:corp.example", u("alice"), r("hiclaw-worker-alice")),
            ("@lena:corp.example", u("alice"), "dm"),
            (u("priya"), u("dev"), r("hiclaw-team-web")),
            (u("dev"), u("priya"), r("hiclaw-team-web")),
            (u("lead"), u("dev"), r("hiclaw-team-web")),
        ),
    )


@pytest.mark.parametrize("view", ["all", "members", "access"])
def test_topology_mermaid(view: str, golden: Golden) -> None:
    golden(f"topology-{view}.mmd", topology(small(), view))


def test_topology_dot(golden: Golden) -> None:
    golden("topology.dot", dot(small()))


def test_unknown_view() -> None:
    with pytest.raises(ValueError, match="unknown view"):
        topology(small(), "everything")
    with pytest.raises(ValueError, match="unknown view"):
        dot(small(), "everything")


def test_short_names_only_when_unambiguous() -> None:
    names = short_names(["@bob:a.example", "@bob:b.example", "@alice:a.example", "#room:a.example", "dm",
                         "@bob:a.example:8080", "@carol:b.example"])
    assert names == {"@alice:a.example": "@alice", "@bob:a.example": "@bob", "@bob:b.example": "@bob:b.example",
                     "#room:a.example": "#room", "dm": "dm", "@bob:a.example:8080": "@bob:a.example:8080",
                     "@carol:b.example": "@carol:b.example"}
    assert short_names(["@x:h", "@x"]) == {"@x": "@x", "@x:h": "@x:h"}


def test_graph_of_the_example_org(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLE), "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR\n")
    for expected in ('"@manager (manager)"', '"@frontend-lead (leader)"', '"@fe-dev (worker)"',
                     '"@docs-writer (standalone)"', '"@priya (human)"', '"@admin (admin)"',
                     'subgraph g_Team_frontend_team["Team frontend-team"]', '"#35;hiclaw-team-frontend-team"'):
        assert expected in out
    assert re.search(r"n\d+ (<)?-\.->\|", out), "access edges are drawn"
    assert "@manager (manager)" in out and "hiclaw-team-frontend-team" in out
    assert main(["graph", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == out, "the same org always gives the same drawing"


def test_graph_dot_of_the_example_org(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLE), "--format", "dot", "--view", "members"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph org {\n") and out.endswith("}\n")
    assert 'label="Team frontend-team"' in out and "style=dashed" not in out


def test_the_manager_never_joins_a_team_room() -> None:
    read = read_org(DirectorySource(EXAMPLE))
    settings = Settings().with_all_providers()
    desired = desired_state(read, settings)
    topo = org_topology(read.validation.org, desired, settings)
    team_room = next(r for r in topo.rooms if r.alias.startswith("#hiclaw-team-frontend-team:"))
    assert team_room.group == "frontend-team"
    assert not any(m.startswith("@manager:") for m in team_room.members)


def test_a_dedicated_actor_is_drawn_apart() -> None:
    read = read_org(DirectorySource(EXAMPLE))
    settings = Settings(matrix=MatrixSettings(actor_user="gitops-bot")).with_all_providers()
    desired = desired_state(read, settings)
    topo = org_topology(read.validation.org, desired, settings)
    actor = next(p for p in topo.people if p.role == "actor")
    assert actor.id.startswith("@gitops-bot:")
    assert all(actor.id not in r.members for r in topo.rooms), "the exempt actor is in no room by the rules"


def test_invalid_org(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(ROOT / "tests" / "bad_input" / "two-managers")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "R410" in captured.err


def test_not_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(tmp_path / "missing")]) == 1
    assert "not a directory" in capsys.readouterr().err
