"""The access report (SPEC §3.3): who can address whom, and where — derived from rooms and agent allow-lists.

An entry `(sender, receiver, channel)` means the sender can address the receiver there:
- channel = a room alias: both are members of that room, and — when the receiver is an agent — the sender is
  on the agent's `groupAllowFrom`. Humans and the admin receive from anyone they share a room with.
- channel = `dm`: the sender is on the receiving agent's `dm.allowFrom`.

The actor account (the reconciler's own) joins every managed room to create and repair it; it is exempt from
the membership rules, so its presence is not in the rooms here and the report names it apart.

The report is held as sets — per room its members and who holds power 100, per agent its group and DM
allow-lists — and `diff` compares them as sets: per room the members and power holders added and removed, per
agent the allow-list entries added and removed, and per principal (a Human, an agent, an outside identity) a
summary of what changed for it. `(sender, receiver)` pairs are never materialised by a plan (a room of n
members has n² of them); `entries` derives them for `graph` and tests only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

DM = "dm"
EMPTY: frozenset[str] = frozenset()


class Access(NamedTuple):
    sender: str
    receiver: str
    channel: str  # a room alias, or "dm"


@dataclass(frozen=True, eq=True)
class AccessReport:
    actor: str
    rooms: Mapping[str, frozenset[str]] = field(default_factory=dict)  # alias -> members by the rules
    group: Mapping[str, frozenset[str]] = field(default_factory=dict)  # agent -> groupAllowFrom
    dm: Mapping[str, frozenset[str]] = field(default_factory=dict)  # agent -> dm.allowFrom
    power: Mapping[str, frozenset[str]] = field(default_factory=dict)  # alias -> who holds power 100
    private: frozenset[str] = EMPTY  # aliases of private rooms: DMs and team worker rooms
    admin: str = ""  # the Global Admin
    manager: str = ""  # the Manager's ID, if any
    domain: str = ""  # the server name: identities elsewhere are outside

    @classmethod
    def build(
        cls,
        actor: str,
        rooms: Mapping[str, Iterable[str]],
        allow: Mapping[str, tuple[Iterable[str], Iterable[str]]],
        *,
        power: Mapping[str, Iterable[str]] | None = None,
        private: Iterable[str] = (),
        admin: str = "",
        manager: str = "",
        domain: str = "",
    ) -> AccessReport:
        """From room members (without the actor unless a rule puts it there) and agent -> (group, dm) lists."""
        return cls(
            actor,
            {alias: frozenset(members) for alias, members in sorted(rooms.items())},
            {agent: frozenset(lists[0]) for agent, lists in sorted(allow.items())},
            {agent: frozenset(lists[1]) for agent, lists in sorted(allow.items())},
            {alias: frozenset(held) for alias, held in sorted((power or {}).items())},
            frozenset(private),
            admin,
            manager,
            domain,
        )

    def kind(self, principal: str) -> str:
        """`actor`, `agent`, `admin`, `human` (of this server) or `outside` (another server's identity)."""
        if principal == self.actor:
            return "actor"
        if principal in self.group or principal in self.dm:
            return "agent"
        if principal == self.admin:
            return "admin"
        if self.domain and not principal.endswith(":" + self.domain):
            return "outside"
        return "human"

    def room_entries(self, alias: str) -> Iterator[Access]:
        members = self.rooms.get(alias, EMPTY)
        for receiver in members:
            allowed = self.group.get(receiver)
            senders = members if allowed is None else members & allowed
            for sender in senders:
                if sender != receiver:
                    yield Access(sender, receiver, alias)

    def dm_entries(self, agent: str) -> Iterator[Access]:
        for sender in self.dm.get(agent, EMPTY):
            yield Access(sender, agent, DM)

    @cached_property
    def entries(self) -> tuple[Access, ...]:
        """Every entry, sorted and unique."""
        found = {e for alias in self.rooms for e in self.room_entries(alias)}
        found.update(e for agent in self.dm for e in self.dm_entries(agent))
        return tuple(sorted(found))

    @cached_property
    def _set(self) -> frozenset[Access]:
        return frozenset(self.entries)

    def __iter__(self) -> Iterator[Access]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, entry: object) -> bool:
        return entry in self._set

    def can(self, sender: str, receiver: str, channel: str) -> bool:
        return Access(sender, receiver, channel) in self._set

    def to_dict(self) -> dict[str, Any]:
        """Compact form: channel -> receiver -> sorted senders, plus the exempt actor."""
        channels: dict[str, dict[str, list[str]]] = {}
        for sender, receiver, channel in self.entries:
            channels.setdefault(channel, {}).setdefault(receiver, []).append(sender)
        return {
            "actor": {"id": self.actor, "exempt": "member of every managed room; not bound by membership rules"},
            "channels": channels,
        }


def to_state(report: AccessReport) -> dict[str, Any]:
    """The report's inputs as plain data, for the state store (entries are derived again on load)."""
    return {
        "actor": report.actor,
        "rooms": {k: sorted(v) for k, v in report.rooms.items()},
        "group": {k: sorted(v) for k, v in report.group.items()},
        "dm": {k: sorted(v) for k, v in report.dm.items()},
        "power": {k: sorted(v) for k, v in report.power.items()},
        "private": sorted(report.private),
        "admin": report.admin,
        "manager": report.manager,
        "domain": report.domain,
    }


def from_state(data: Mapping[str, Any] | None) -> AccessReport | None:
    if not data:
        return None
    # Decoded JSON repeats every ID as a new string and equal lists as new sets: share them, as the compiled
    # report does. A large org's report is millions of entries, mostly the same level-1 humans everywhere.
    names: dict[str, str] = {}
    sets: dict[tuple[str, ...], frozenset[str]] = {}

    def members(entries: list[str]) -> frozenset[str]:
        key = tuple(names.setdefault(e, e) for e in entries)
        found = sets.get(key)
        if found is None:
            found = sets[key] = frozenset(key)
        return found

    return AccessReport(
        data["actor"],
        {k: members(v) for k, v in data["rooms"].items()},
        {k: members(v) for k, v in data["group"].items()},
        {k: members(v) for k, v in data["dm"].items()},
        {k: members(v) for k, v in (data.get("power") or {}).items()},  # absent in snapshots before power
        frozenset(data.get("private") or ()),
        str(data.get("admin") or ""),
        str(data.get("manager") or ""),
        str(data.get("domain") or ""),
    )


@dataclass(frozen=True, slots=True)
class SetChange:
    """What was added to and removed from one set (a room's members, an agent's allow-list)."""

    added: frozenset[str] = EMPTY
    removed: frozenset[str] = EMPTY

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def to_dict(self) -> dict[str, list[str]]:
        return {"added": sorted(self.added), "removed": sorted(self.removed)}

    @classmethod
    def of(cls, old: frozenset[str], new: frozenset[str]) -> SetChange:
        if _same(old, new):
            return NO_CHANGE
        # A set against nothing is shared, not copied (the same level-1 humans sit on every agent's lists).
        added = new if not old else new - old
        removed = old if not new else old - new
        return cls(added, removed)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SetChange:
        return cls(frozenset(data.get("added") or ()), frozenset(data.get("removed") or ()))


NO_CHANGE = SetChange()


@dataclass(frozen=True, slots=True)
class RoomChange:
    room: str
    members: SetChange
    power: SetChange
    private: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"room": self.room, "private": self.private, "members": self.members.to_dict(),
                "power": self.power.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoomChange:
        return cls(str(data["room"]), SetChange.from_dict(data["members"]), SetChange.from_dict(data["power"]),
                   bool(data.get("private")))


@dataclass(frozen=True, slots=True)
class AgentChange:
    """Who may address the agent: its group (`groupAllowFrom`) and DM (`dm.allowFrom`) allow-lists."""

    agent: str
    group: SetChange
    dm: SetChange

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "group": self.group.to_dict(), "dm": self.dm.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentChange:
        return cls(str(data["agent"]), SetChange.from_dict(data["group"]), SetChange.from_dict(data["dm"]))


EXAMPLES = 10  # names kept per principal and direction; the full sets are in the room and agent changes


@dataclass(frozen=True, slots=True)
class Tally:
    """How many, with a bounded number of examples (sorted)."""

    count: int = 0
    examples: tuple[str, ...] = ()

    @classmethod
    def of(cls, names: Iterable[str]) -> Tally:
        found = sorted(names)
        return cls(len(found), tuple(found[:EXAMPLES]))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "examples": list(self.examples)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        return cls(int(data.get("count", 0)), tuple(data.get("examples") or ()))


NONE = Tally()


@dataclass(frozen=True, slots=True)
class Principal:
    """What changed for one identity: rooms it joins and leaves, agents that now accept it (group or DM) and no
    longer do, and — for an agent — how many more or fewer may address it."""

    id: str
    kind: str  # agent | human | admin | outside | actor
    rooms_gained: Tally = NONE
    rooms_lost: Tally = NONE
    reaches_gained: Tally = NONE  # agents whose allow-lists gained it
    reaches_lost: Tally = NONE
    reached_by_gained: int = 0  # for an agent: entries added to its own allow-lists
    reached_by_lost: int = 0

    def line(self) -> str:
        """One line for people: `@priya:d (human): +11 rooms, can address 9 more agents`."""
        parts = []
        if self.rooms_gained.count or self.rooms_lost.count:
            parts.append(_counted(self.rooms_gained.count, self.rooms_lost.count, "room"))
        if self.reaches_gained.count:
            parts.append(f"can address {self.reaches_gained.count} more agent{_s(self.reaches_gained.count)}")
        if self.reaches_lost.count:
            parts.append(f"can no longer address {self.reaches_lost.count} agent{_s(self.reaches_lost.count)}")
        if self.reached_by_gained:
            parts.append(f"addressable by {self.reached_by_gained} more")
        if self.reached_by_lost:
            parts.append(f"addressable by {self.reached_by_lost} fewer")
        return f"{self.id} ({KIND_WORDS.get(self.kind, self.kind)}): " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "summary": self.line(),
            "rooms": {"gained": self.rooms_gained.to_dict(), "lost": self.rooms_lost.to_dict()},
            "can_address": {"gained": self.reaches_gained.to_dict(), "lost": self.reaches_lost.to_dict()},
            "addressable_by": {"gained": self.reached_by_gained, "lost": self.reached_by_lost},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Principal:
        rooms, reach = data["rooms"], data["can_address"]
        return cls(str(data["id"]), str(data["kind"]), Tally.from_dict(rooms["gained"]), Tally.from_dict(rooms["lost"]),
                   Tally.from_dict(reach["gained"]), Tally.from_dict(reach["lost"]),
                   int(data["addressable_by"]["gained"]), int(data["addressable_by"]["lost"]))


KIND_WORDS = {"outside": "outside the server's domain", "admin": "Global Admin", "actor": "the reconciler's actor"}


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _counted(gained: int, lost: int, word: str) -> str:
    signs = [f"+{gained}" if gained else "", f"−{lost}" if lost else ""]
    return " ".join(x for x in signs if x) + f" {word}{_s(max(gained, lost))}"


@dataclass(frozen=True, slots=True)
class AccessDiff:
    """The access report's change: set changes per room and per agent, a summary per principal, and the risky
    changes as warnings. Its size grows with what changed, never with pairs."""

    actor: str = ""
    rooms: tuple[RoomChange, ...] = ()
    agents: tuple[AgentChange, ...] = ()
    principals: tuple[Principal, ...] = ()
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rooms or self.agents)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": {"id": self.actor, "exempt": "member of every managed room; not bound by membership rules"},
            "principals": [p.to_dict() for p in self.principals],
            "rooms": [r.to_dict() for r in self.rooms],
            "agents": [a.to_dict() for a in self.agents],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccessDiff:
        return cls(
            str((data.get("actor") or {}).get("id", "")),
            tuple(RoomChange.from_dict(r) for r in data.get("rooms") or ()),
            tuple(AgentChange.from_dict(a) for a in data.get("agents") or ()),
            tuple(Principal.from_dict(p) for p in data.get("principals") or ()),
            tuple(data.get("warnings") or ()),
        )


def diff(before: AccessReport | None, after: AccessReport) -> AccessDiff:
    """Set changes per room and per agent (only those that differ), a summary per principal, and warnings.
    Cost: the rooms and agents of both reports, plus the entries that changed."""
    before = before if before is not None else AccessReport(after.actor)
    rooms: list[RoomChange] = []
    for alias in sorted(before.rooms.keys() | after.rooms.keys()):
        members = SetChange.of(before.rooms.get(alias, EMPTY), after.rooms.get(alias, EMPTY))
        power = SetChange.of(before.power.get(alias, EMPTY), after.power.get(alias, EMPTY))
        if members or power:
            rooms.append(RoomChange(alias, members, power, alias in after.private or alias in before.private))
    agents: list[AgentChange] = []
    for agent in sorted(before.group.keys() | after.group.keys() | before.dm.keys() | after.dm.keys()):
        group = SetChange.of(before.group.get(agent, EMPTY), after.group.get(agent, EMPTY))
        dm = SetChange.of(before.dm.get(agent, EMPTY), after.dm.get(agent, EMPTY))
        if group or dm:
            agents.append(AgentChange(agent, group, dm))
    principals = _principals(after, before, rooms, agents)
    return AccessDiff(after.actor, tuple(rooms), tuple(agents), principals,
                      tuple(_warnings(after, rooms, agents, principals)))


def _principals(
    after: AccessReport, before: AccessReport, rooms: list[RoomChange], agents: list[AgentChange]
) -> tuple[Principal, ...]:
    joined: dict[str, list[str]] = {}
    left: dict[str, list[str]] = {}
    for change in rooms:
        for who in change.members.added:
            joined.setdefault(who, []).append(change.room)
        for who in change.members.removed:
            left.setdefault(who, []).append(change.room)
    reaches: dict[str, set[str]] = {}
    unreaches: dict[str, set[str]] = {}
    for lists in agents:
        for who in lists.group.added | lists.dm.added:
            reaches.setdefault(who, set()).add(lists.agent)
        for who in lists.group.removed | lists.dm.removed:
            unreaches.setdefault(who, set()).add(lists.agent)
    by_agent = {a.agent: a for a in agents}
    out = []
    for who in sorted(joined.keys() | left.keys() | reaches.keys() | unreaches.keys() | by_agent.keys()):
        mine = by_agent.get(who)
        was_agent = (who in before.group or who in before.dm) and not (who in after.group or who in after.dm)
        kind = before.kind(who) if was_agent else after.kind(who)
        out.append(Principal(
            who, kind,
            Tally.of(joined.get(who, ())), Tally.of(left.get(who, ())),
            Tally.of(reaches.get(who, set()) - {who}), Tally.of(unreaches.get(who, set()) - {who}),
            len(mine.group.added | mine.dm.added) if mine else 0,
            len(mine.group.removed | mine.dm.removed) if mine else 0,
        ))
    return tuple(out)


def _warnings(
    after: AccessReport, rooms: list[RoomChange], agents: list[AgentChange], principals: tuple[Principal, ...]
) -> list[str]:
    out = []
    for p in principals:
        if p.kind == "outside" and (p.reaches_gained.count or p.rooms_gained.count):
            where = []
            if p.reaches_gained.count:
                where.append(f"can now address {p.reaches_gained.count} agent{_s(p.reaches_gained.count)} "
                             f"({_examples(p.reaches_gained.examples, total=p.reaches_gained.count)})")
            if p.rooms_gained.count:
                where.append(f"joins {p.rooms_gained.count} room{_s(p.rooms_gained.count)}")
            out.append(f"access: {p.id} is outside the server's domain ({after.domain}) and " + " and ".join(where))
    for change in rooms:
        if not change.private:
            continue
        people = sorted(w for w in change.members.added if after.kind(w) in ("human", "outside"))
        if people:
            out.append(f"access: {_examples(people)} added to the private room {change.room}")
    for lists in agents:
        lost = lists.group.removed | lists.dm.removed
        kept = after.group.get(lists.agent, EMPTY) | after.dm.get(lists.agent, EMPTY)
        still_agent = lists.agent in after.group or lists.agent in after.dm
        for role, who in (("its Manager", after.manager), ("the Global Admin", after.admin)):
            if who and who in lost and who not in kept and still_agent:
                out.append(f"access: {lists.agent} loses {role} ({who}): they can no longer address it")
    if (rooms or agents) and after.actor and after.actor == after.admin and after.private:
        out.append(f"access: the actor is the Global Admin ({after.admin}), so the Global Admin sits in every "
                   "managed room, team-private ones included (use a dedicated actor account)")
    return out


def _examples(ids: Iterable[str], limit: int = 3, total: int | None = None) -> str:
    names = sorted(ids)
    more = (len(names) if total is None else total) - min(limit, len(names))
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def _same(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is b or a == b  # the same object is common (reports share sets) and costs nothing to compare
