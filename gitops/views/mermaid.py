"""Mermaid diagrams: what a plan changes (`changes`, for the PR comment) and the org's topology (`topology`, for graph).

Both draw values they are given and decide nothing: `changes` reads `Plan.to_dict()`, `topology` reads a
`Topology` that the graph command assembles from the compiled desired state. Node ids are numbered in
sorted order, so the same input always gives the same text. Labels drop the `:server` part of Matrix ids
and room aliases on the org's own server, unless two of them would then read the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PlanDict = Mapping[str, Any]

# Above these sizes a diagram stops being readable (and GitHub refuses more than 500 edges).
MAX_NODES = 80
MAX_EDGES = 150
TOO_LARGE = "The topology of this change is too large to draw; `hiclaw-gitops graph` draws the whole org."
NO_ACCESS = "Access edges are left out of the diagram: too many to draw."

GREEN, RED, GREY, BLUE = "#1a7f37", "#cf222e", "#8c959f", "#0969da"
CHANGE_CLASSES = (
    f"classDef added fill:#dafbe1,stroke:{GREEN},color:{GREEN}",
    f"classDef removed fill:#ffebe9,stroke:{RED},color:{RED},stroke-dasharray:4 3",
    "classDef changed fill:#fff8c5,stroke:#9a6700,color:#9a6700",
    f"classDef affected fill:#f6f8fa,stroke:{GREY},color:#57606a",
)
ROLE_CLASSES = (
    "classDef manager fill:#ddf4ff,stroke:#0969da,color:#0969da",
    "classDef leader fill:#fbefff,stroke:#8250df,color:#8250df",
    "classDef worker fill:#f6f8fa,stroke:#57606a,color:#24292f",
    "classDef human fill:#fff8c5,stroke:#9a6700,color:#9a6700",
    "classDef admin fill:#ffebe9,stroke:#cf222e,color:#cf222e",
    "classDef room fill:#ffffff,stroke:#8c959f,color:#57606a",
)
_ACTION_CLASS = {"create": "added", "delete": "removed", "update": "changed", "replace": "changed"}
_STATUS_CLASS = {"created": "added", "deleted": "removed", "updated": "changed", "affected": "affected"}
_SHAPES = {"box": ("[", "]"), "room": ("([", "])"), "person": ("(", ")"), "resource": ("[[", "]]")}


def label(text: str) -> str:
    """A quoted Mermaid label; characters Mermaid would read as syntax become entity codes."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return f'"{text}"'


def short_names(names: Iterable[str]) -> dict[str, str]:
    """`@alice:server` → `@alice`, `#room:server` → `#room` for the org's own server (the one most names are
    on); ids on other servers stay whole, and so do names that would then read the same."""
    full = sorted(set(names))
    servers: dict[str, int] = {}
    for n in full:
        if n[:1] in "@#" and ":" in n:
            servers[n.split(":", 1)[1]] = servers.get(n.split(":", 1)[1], 0) + 1
    home = min(servers, key=lambda s: (-servers[s], s)) if servers else ""
    suffix = f":{home}"
    short = {n: n.removesuffix(suffix) if home and n[:1] in "@#" else n for n in full}
    seen: dict[str, int] = {}
    for s in short.values():
        seen[s] = seen.get(s, 0) + 1
    return {n: s if seen[s] == 1 else n for n, s in short.items()}


def access_pairs(entries: Iterable[Sequence[str]]) -> list[tuple[str, str, bool, tuple[str, ...]]]:
    """Access entries as edges: (sender, receiver, both ways, channels). A pair that reaches each other
    through the same channels becomes one two-way edge."""
    pairs: dict[tuple[str, str], set[str]] = {}
    for sender, receiver, channel in entries:
        pairs.setdefault((sender, receiver), set()).add(channel)
    out = []
    for (a, b), channels in sorted(pairs.items()):
        back = pairs.get((b, a))
        if back == channels and b < a:
            continue  # drawn from the other end
        out.append((a, b, back == channels, tuple(sorted(channels))))
    return out


@dataclass
class _Diagram:
    """Nodes and edges collected first, then written with deterministic ids, labels and edge styles."""

    nodes: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)  # key -> (shape, name, note, class)
    edges: list[tuple[str, str, str, tuple[str, ...], str]] = field(default_factory=list)  # a, b, arrow, label, colour

    def node(self, key: str, shape: str, name: str, cls: str = "", note: str = "") -> None:
        if key not in self.nodes or (cls and not self.nodes[key][3]):
            self.nodes[key] = (shape, name, note, cls)

    def edge(self, a: str, b: str, arrow: str, text: Sequence[str] = (), colour: str = "") -> None:
        self.edges.append((a, b, arrow, tuple(text), colour))

    def fits(self) -> bool:
        return len(self.nodes) <= MAX_NODES and len(self.edges) <= MAX_EDGES

    def write(self, class_defs: Iterable[str], groups: Mapping[str, str] | None = None) -> str:
        ids = {key: f"n{i}" for i, key in enumerate(sorted(self.nodes))}
        names = short_names([n[1] for n in self.nodes.values()] + [t for e in self.edges for t in e[3]])
        lines = ["flowchart LR", *(f"  {c}" for c in class_defs)]

        def node_line(key: str, indent: str) -> str:
            shape, name, note, cls = self.nodes[key]
            opening, closing = _SHAPES[shape]
            text = f"{names[name]} ({note})" if note else names[name]
            return f"{indent}{ids[key]}{opening}{label(text)}{closing}" + (f":::{cls}" if cls else "")

        groups = groups or {}
        for group in sorted({g for g in groups.values() if g}):
            lines.append(f"  subgraph g_{''.join(c if c.isalnum() else '_' for c in group)}[{label(group)}]")
            lines.extend(node_line(k, "    ") for k in sorted(self.nodes) if groups.get(k) == group)
            lines.append("  end")
        lines.extend(node_line(k, "  ") for k in sorted(self.nodes) if not groups.get(k))
        styles: dict[str, list[int]] = {}
        for i, (a, b, arrow, text, colour) in enumerate(self.edges):
            caption = f"|{label(', '.join(names.get(t, t) for t in text))}|" if text else ""
            lines.append(f"  {ids[a]} {arrow}{caption} {ids[b]}")
            if colour:
                styles.setdefault(colour, []).append(i)
        for colour in sorted(styles):
            lines.append(f"  linkStyle {','.join(map(str, styles[colour]))} stroke:{colour},color:{colour}")
        return "\n".join(lines) + "\n"


# What a plan changes --------------------------------------------------------------------------------------


def changes(plan: PlanDict, with_access: bool = True) -> str:
    """A flowchart of what the plan changes; "" when there is nothing to draw.

    Nodes: org resources (styled by summary status), rooms and accounts whose objects change (styled by
    action), and accounts whose access changes. Edges: resource to the room or account it owns (grey),
    members joining (green) or leaving (red, dotted) a room, access gained (green) or lost (red, dotted).
    """
    d = _changes(plan, with_access)
    return d.write(CHANGE_CLASSES) if d.nodes else ""


def changes_fit(plan: PlanDict) -> tuple[str, str]:
    """The fullest change diagram within MAX_NODES / MAX_EDGES, and a note on what it leaves out ("" if nothing)."""
    full = _changes(plan, with_access=True)
    if not full.nodes:
        return "", ""
    if full.fits():
        return full.write(CHANGE_CLASSES), ""
    reduced = _changes(plan, with_access=False)
    if reduced.nodes and reduced.fits():
        return reduced.write(CHANGE_CLASSES), NO_ACCESS
    return "", TOO_LARGE


def _changes(plan: PlanDict, with_access: bool) -> _Diagram:
    d = _Diagram()
    for s in plan.get("summaries") or ():
        d.node(f"r:{s['ref']}", "resource", s["ref"], _STATUS_CLASS.get(s["status"], "affected"))
    for c in plan.get("changes") or ():
        if c["provider"] != "matrix" or c["type"] not in ("room", "user"):
            continue
        spec = c.get("after") or c.get("before") or {}
        cls = _ACTION_CLASS.get(c["action"], "")
        owner = f"r:{c['owner']}"
        if c["type"] == "user":
            user = str(spec.get("user_id") or c["name"])
            d.node(f"u:{user}", "person", user, cls)
            if owner in d.nodes:
                d.edge(owner, f"u:{user}", "-.-", (), GREY)
            continue
        room = f"m:{c['name']}"
        d.node(room, "room", str(spec.get("alias") or "#" + c["name"]), cls)
        if owner in d.nodes:
            d.edge(owner, room, "-.-", (), GREY)
        for user, joins in _membership(c):
            d.node(f"u:{user}", "person", user)
            if joins:
                d.edge(room, f"u:{user}", "---", ("joins",), GREEN)
            else:
                d.edge(room, f"u:{user}", "-.-", ("leaves",), RED)
    if with_access:
        access = plan.get("access") or {}
        for agent in access.get("agents") or ():  # who may now (or no longer) address the agent, and where
            receiver = agent["agent"]
            for gained, side in ((True, "added"), (False, "removed")):
                channels: dict[str, list[str]] = {}
                for key in ("group", "dm"):
                    for sender in agent[key][side]:
                        channels.setdefault(sender, []).append(key)
                for sender, where in sorted(channels.items()):
                    d.node(f"u:{sender}", "person", sender)
                    d.node(f"u:{receiver}", "person", receiver)
                    d.edge(f"u:{sender}", f"u:{receiver}", "-->" if gained else "-.->", tuple(where),
                           GREEN if gained else RED)
    return d


def _membership(change: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Members a room change adds (True) or removes (False): from its diff, or all when created or deleted."""
    if change["action"] == "create":
        return [(m, True) for m in (change.get("after") or {}).get("members") or ()]
    if change["action"] == "delete":
        return [(m, False) for m in (change.get("before") or {}).get("members") or ()]
    out = []
    for item in change.get("diff") or ():
        if item["path"] == "members" and item["op"] in ("add", "remove"):
            value = item["new"] if item["op"] == "add" else item["old"]
            if isinstance(value, str):
                out.append((value, item["op"] == "add"))
    return out


# The org's topology ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    """An account of the org: an agent, a human, the Global Admin, or the reconciler's actor."""

    id: str  # Matrix ID
    role: str  # manager | leader | worker | standalone | human | admin | actor
    group: str = ""  # the team it belongs to, if any


@dataclass(frozen=True, slots=True)
class Room:
    alias: str
    members: tuple[str, ...]  # by the membership rules (the exempt actor is not listed)
    group: str = ""  # the team whose room it is, if any


@dataclass(frozen=True, slots=True)
class Topology:
    """Who exists, which rooms they share, and who can address whom where: the graph command's input."""

    people: tuple[Person, ...]
    rooms: tuple[Room, ...]
    access: tuple[tuple[str, str, str], ...] = ()


VIEWS = ("all", "members", "access")
ROLE_CLASS = {"manager": "manager", "leader": "leader", "worker": "worker", "standalone": "worker",
              "human": "human", "admin": "admin", "actor": "admin"}


def topology(topo: Topology, view: str = "all") -> str:
    """The org as a flowchart: people and rooms (a subgraph per team), membership and/or access edges.

    `members` draws who is in which room; `access` who can address whom (edge labels name the rooms, `dm`
    for direct messages); `all` both.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    d = _Diagram()
    groups: dict[str, str] = {}
    for p in topo.people:
        shape = "person" if p.role in ("human", "admin", "actor") else "box"
        d.node(f"u:{p.id}", shape, p.id, ROLE_CLASS.get(p.role, "human"), p.role)
        groups[f"u:{p.id}"] = f"Team {p.group}" if p.group else ""
    if view in ("all", "members"):
        for room in topo.rooms:
            d.node(f"m:{room.alias}", "room", room.alias, "room")
            groups[f"m:{room.alias}"] = f"Team {room.group}" if room.group else ""
            for member in room.members:
                d.node(f"u:{member}", "person", member, "human")
                d.edge(f"u:{member}", f"m:{room.alias}", "---")
    if view in ("all", "access"):
        for sender, receiver, both, channels in access_pairs(topo.access):
            d.node(f"u:{sender}", "person", sender, "human")
            d.node(f"u:{receiver}", "person", receiver, "human")
            d.edge(f"u:{sender}", f"u:{receiver}", "<-.->" if both else "-.->", channels, BLUE)
    return d.write(ROLE_CLASSES, groups)
