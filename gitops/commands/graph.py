"""`hiclaw-gitops graph`: draw the org — agents, humans, rooms, who is in which room, who can address whom."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from gitops.commands._common import READ_ORG, add_command, load_settings, org_argument, report, with_org
from gitops.commands._org import OrgSource
from gitops.diagnostics import has_errors
from gitops.objects import DesiredState, Provider
from gitops.org import Org
from gitops.settings.model import Settings
from gitops.views.mermaid import (
    ROLE_CLASS,
    VIEWS,
    Person,
    Room,
    Topology,
    access_pairs,
    short_names,
    topology,
)

# DOT fill and line colours per role class, matching the Mermaid class definitions.
_DOT_FILL = {
    "manager": ("#ddf4ff", "#0969da"),
    "leader": ("#fbefff", "#8250df"),
    "worker": ("#f6f8fa", "#57606a"),
    "human": ("#fff8c5", "#9a6700"),
    "admin": ("#ffebe9", "#cf222e"),
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "graph", READ_ORG,
        help="draw the org: agents, humans, rooms, membership and who can address whom",
        description="Compile the org chart (the folder PATH, else --path, else the current directory; with "
        "--repo/--branch, the tip of that remote branch) offline, every provider as if configured, and draw its "
        "topology: the Manager, team leaders and workers, standalone Workers, humans, the Global Admin, the rooms "
        "and their members, and the access matrix (who can address whom, in which room or by direct message). "
        "Output is Mermaid (paste into Markdown) or Graphviz DOT (`dot -Tsvg`). Exit 1 when the org is invalid.",
    )
    org_argument(p)
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="output format (default: mermaid)")
    p.add_argument(
        "--view",
        choices=VIEWS,
        default="all",
        help="members: rooms and who is in them; access: who can address whom; all: both (default)",
    )
    p.add_argument("--strict", action="store_true", help="treat documents with a foreign apiVersion as errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    return with_org(args, settings, lambda org: _draw(args, settings, org))


def _draw(args: argparse.Namespace, settings: Settings, org: OrgSource) -> int:
    from gitops.pipeline import desired_state, read_org
    from gitops.validate.check import settings_checks

    read = read_org(org.source, strict=args.strict, head=org.commit, **settings_checks(settings))
    report(org.rebase(read.validation.diagnostics), args.color)
    if not read.ok or has_errors(read.validation.diagnostics):
        return 1
    offline = settings.with_all_providers()
    desired = desired_state(read, offline)
    topo = org_topology(read.validation.org, desired, offline)
    sys.stdout.write(topology(topo, args.view) if args.format == "mermaid" else dot(topo, args.view))
    return 0


def org_topology(org: Org, desired: DesiredState, settings: Settings) -> Topology:
    """People with their roles (from the resolved chart), rooms and members (from the access report's rooms,
    which follow the membership rules without the exempt actor), and the access report's entries."""
    from gitops.compile.identities import Chart

    chart = Chart.of(org, settings)
    people: dict[str, Person] = {chart.admin: Person(chart.admin, "admin")}
    if chart.actor != chart.admin:
        people[chart.actor] = Person(chart.actor, "actor")
    if chart.manager and chart.manager_id:
        people[chart.manager_id] = Person(chart.manager_id, "manager")
    for agent in chart.standalone:
        people[chart.id(agent)] = Person(chart.id(agent), "standalone")
    for team in chart.teams:
        people[chart.id(team.leader)] = Person(chart.id(team.leader), "leader", team.name)
        for worker in team.workers:
            people[chart.id(worker)] = Person(chart.id(worker), "worker", team.name)
    for user_id in chart.humans.values():
        people.setdefault(user_id, Person(user_id, "human"))

    teams = _room_teams(desired)
    report = desired.access
    rooms: Mapping[str, frozenset[str]] = report.rooms if report is not None else {}
    entries = report.entries if report is not None else ()
    return Topology(
        people=tuple(people[k] for k in sorted(people)),
        rooms=tuple(Room(a, tuple(sorted(members)), teams.get(a, "")) for a, members in sorted(rooms.items())),
        access=tuple(sorted((str(s), str(r), str(c)) for s, r, c in entries)),
    )


def _room_teams(desired: DesiredState) -> Mapping[str, str]:
    """Room alias → the Team that owns it, from the compiled `matrix/room` objects."""
    out: dict[str, str] = {}
    for obj in desired.by_provider(Provider.MATRIX):
        if obj.type == "room" and obj.owner.startswith("Team/"):
            out[str(obj.spec.get("alias"))] = obj.owner.split("/", 1)[1]
    return out


# Graphviz ---------------------------------------------------------------------------------------------------


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(topo: Topology, view: str = "all") -> str:
    """The same drawing as `mermaid.topology`, in Graphviz DOT: a cluster per team, rooms as ellipses."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    show_rooms = view in ("all", "members")
    show_access = view in ("all", "access")
    nodes: dict[str, tuple[str, str, str]] = {}  # key -> (name, role or "room", group)
    for p in topo.people:
        nodes[f"u:{p.id}"] = (p.id, p.role, p.group)
    edges: list[str] = []
    members: list[tuple[str, str]] = []
    if show_rooms:
        for room in topo.rooms:
            nodes[f"m:{room.alias}"] = (room.alias, "room", room.group)
            members += [(f"u:{m}", f"m:{room.alias}") for m in room.members]
    pairs = access_pairs(topo.access) if show_access else []
    for a, b in [(a, b) for a, b in members] + [(f"u:{s}", f"u:{r}") for s, r, _, _ in pairs]:
        for key in (a, b):
            nodes.setdefault(key, (key[2:], "human", ""))
    ids = {key: f"n{i}" for i, key in enumerate(sorted(nodes))}
    names = short_names([n[0] for n in nodes.values()] + [c for *_, cs in pairs for c in cs])

    def node_line(key: str, indent: str) -> str:
        name, role, _ = nodes[key]
        if role == "room":
            return f'{indent}{ids[key]} [label={_q(names[name])}, shape=ellipse, fillcolor="#ffffff", color="#8c959f"];'
        fill, line = _DOT_FILL[ROLE_CLASS.get(role, "human")]
        shape = "ellipse" if role in ("human", "admin", "actor") else "box"
        text = f"{names[name]} ({role})"
        return f"{indent}{ids[key]} [label={_q(text)}, shape={shape}, fillcolor={_q(fill)}, color={_q(line)}];"

    out = [
        "digraph org {",
        '  graph [rankdir=LR, fontname="Helvetica"];',
        '  node [fontname="Helvetica", style="filled,rounded"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    groups = sorted({g for _, _, g in nodes.values() if g})
    for i, group in enumerate(groups):
        out.append(f"  subgraph cluster_{i} {{")
        out.append(f"    label={_q('Team ' + group)};")
        out.extend(node_line(k, "    ") for k in sorted(nodes) if nodes[k][2] == group)
        out.append("  }")
    out.extend(node_line(k, "  ") for k in sorted(nodes) if not nodes[k][2])
    edges += [f'  {ids[a]} -> {ids[b]} [dir=none, color="#8c959f"];' for a, b in members]
    for sender, receiver, both, channels in pairs:
        text = ", ".join(names.get(c, c) for c in channels)
        direction = ", dir=both" if both else ""
        edges.append(f'  {ids["u:" + sender]} -> {ids["u:" + receiver]} '
                     f'[style=dashed, color="#0969da", label={_q(text)}{direction}];')
    out += edges
    out.append("}")
    return "\n".join(out) + "\n"
