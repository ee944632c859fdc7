"""The access report (SPEC §3.3): who can address whom, and where — derived from rooms and agent allow-lists.

An entry `(sender, receiver, channel)` means the sender can address the receiver there:
- channel = a room alias: both are members of that room, and — when the receiver is an agent — the sender is
  on the agent's `groupAllowFrom`. Humans and the admin receive from anyone they share a room with.
- channel = `dm`: the sender is on the receiving agent's `dm.allowFrom`.

The actor account (the reconciler's own) joins every managed room to create and repair it; it is exempt from
the membership rules, so its presence is not in the rooms here and the report names it apart.

The report keeps rooms and allow-lists and derives entries on demand; `diff` compares only the rooms and
allow-lists that changed, so a one-file change in a very large org costs little.
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

    @classmethod
    def build(
        cls,
        actor: str,
        rooms: Mapping[str, Iterable[str]],
        allow: Mapping[str, tuple[Iterable[str], Iterable[str]]],
    ) -> AccessReport:
        """From room members (without the actor unless a rule puts it there) and agent -> (group, dm) lists."""
        return cls(
            actor,
            {alias: frozenset(members) for alias, members in sorted(rooms.items())},
            {agent: frozenset(lists[0]) for agent, lists in sorted(allow.items())},
            {agent: frozenset(lists[1]) for agent, lists in sorted(allow.items())},
        )

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
    )


def diff(before: AccessReport | None, after: AccessReport) -> tuple[tuple[Access, ...], tuple[Access, ...]]:
    """(gained, lost), each sorted; only rooms and allow-lists that differ are expanded."""
    if before is None:
        before = AccessReport(after.actor)
    gained: set[Access] = set()
    lost: set[Access] = set()
    # Agents whose group allow-list changed, compared once each (not once per room they are in).
    regrouped = {
        a for a in before.group.keys() | after.group.keys() if not _same(before.group.get(a), after.group.get(a))
    }
    for alias in before.rooms.keys() | after.rooms.keys():
        old, new = before.rooms.get(alias, EMPTY), after.rooms.get(alias, EMPTY)
        if _same(old, new) and regrouped.isdisjoint(new):
            continue
        was, now = set(before.room_entries(alias)), set(after.room_entries(alias))
        gained |= now - was
        lost |= was - now
    for agent in before.dm.keys() | after.dm.keys():
        old, new = before.dm.get(agent, EMPTY), after.dm.get(agent, EMPTY)
        if not _same(old, new):
            gained.update(Access(s, agent, DM) for s in new - old)
            lost.update(Access(s, agent, DM) for s in old - new)
    return tuple(sorted(gained)), tuple(sorted(lost))


def _same(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is b or a == b  # the same object is common (reports share sets) and costs nothing to compare
