"""Matrix rooms (`matrix/room/<alias localpart>`): found by alias, created once, converged to exact membership,
closed on delete.

A room is ours when its `io.hiclaw.gitops.room` state event carries our instance label, or — a creation cut
short before that event was written — when the actor created it. Missing rooms are created with preset
`private_chat`, explicit power levels (never the creator in `users` on room version 12) and our marker in the
initial state; then, new or found, the state is converged: marker, canonical alias, name, power levels,
membership (missing members invited, agents joined with their own token, anyone else kicked, the actor
excepted). Nothing is written that already holds. A closed room keeps only the actor, its name is marked
"(closed)", its alias released and our marker marked closed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backends.matrix_http import CLIENT, MatrixError, UnexpectedAnswer, q, shape
from backends.matrix_session import JOIN_DEVICE, ROOM, ROOM_MARKER, Session, localpart, log
from gitops.objects import ManagedObject, Provider, make_key
from gitops.providers.protocol import ApplyResult, Observed, Outcome, PermanentError
from gitops.settings.load import REDACTOR

CREATORS_IMPLICIT = frozenset({"12"})  # room versions whose creators hold power implicitly (MSC4289)


@dataclass
class RoomState:
    """What a room's state says, in the terms the backend compares."""

    room_id: str
    version: str = "1"
    creators: frozenset[str] = frozenset()
    alias: str = ""
    name: str = ""
    members: dict[str, str] = field(default_factory=dict)  # user -> membership
    power: dict[str, Any] | None = None  # the m.room.power_levels content
    marker: dict[str, Any] | None = None

    @classmethod
    def of(cls, room_id: str, events: Iterable[Any], what: str) -> RoomState:
        state = cls(room_id)
        for event in events:
            if not isinstance(event, Mapping):
                raise UnexpectedAnswer(f"{what}: a state event of room {room_id} is {shape(event)}, not an object")
            kind, key, content = event.get("type"), event.get("state_key"), event.get("content")
            if not isinstance(content, Mapping) or not isinstance(key, str):
                continue  # redacted or malformed events say nothing
            if kind == "m.room.create":
                creator = event.get("sender")
                state.version = str(content.get("room_version") or "1")
                extra = content.get("additional_creators") if state.version in CREATORS_IMPLICIT else None
                state.creators = frozenset(
                    [c for c in [creator, *(extra if isinstance(extra, list) else [])] if isinstance(c, str)]
                )
            elif kind == "m.room.canonical_alias":
                state.alias = str(content.get("alias") or "")
            elif kind == "m.room.name":
                state.name = str(content.get("name") or "")
            elif kind == "m.room.member":
                membership = content.get("membership")
                if isinstance(membership, str):
                    state.members[key] = membership
            elif kind == "m.room.power_levels":
                state.power = dict(content)
            elif kind == ROOM_MARKER and key == "":
                state.marker = dict(content)
        return state

    @property
    def present(self) -> set[str]:
        return {u for u, m in self.members.items() if m in ("join", "invite", "knock")}

    def power_users(self) -> dict[str, int]:
        users = (self.power or {}).get("users")
        out = {str(u): int(v) for u, v in users.items() if isinstance(v, int)} if isinstance(users, Mapping) else {}
        if self.version in CREATORS_IMPLICIT:
            out.update(dict.fromkeys(self.creators, 100))
        return out


class Rooms:
    """The `room` type of the Matrix backend, acting through the actor's session."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self._versions: str | None = None

    # Observation -----------------------------------------------------------------------------------

    def rooms_from(self, answer: Mapping[str, Any], what: str) -> list[RoomState]:
        rooms = answer.get("rooms")
        if rooms is not None and not isinstance(rooms, Mapping):
            raise UnexpectedAnswer(f"{what}: `rooms` is {shape(rooms)}, not an object")
        joined = (rooms or {}).get("join")
        joined = {} if joined is None else joined
        if not isinstance(joined, Mapping):
            raise UnexpectedAnswer(f"{what}: `rooms.join` is {shape(joined)}, not an object")
        out = []
        for room_id, room in joined.items():
            events = ((room or {}).get("state") or {}).get("events") if isinstance(room, Mapping) else None
            if not isinstance(events, list):
                raise UnexpectedAnswer(f"{what}: the state of room {room_id} is {shape(events)}, not a list")
            out.append(RoomState.of(str(room_id), events, what))
        return out

    def observed(self, state: RoomState, agents: set[str]) -> Observed | None:
        marker = state.marker or {}
        if marker.get("instance") != self.s.instance or marker.get("closed"):
            return None
        alias = str(marker.get("alias") or state.alias)
        lp = alias[1:].split(":", 1)[0] if alias.startswith("#") else ""
        if not lp:
            return None
        members = sorted(u for u, m in state.members.items()
                         if m == "join" or (m in ("invite", "knock") and u not in agents))
        spec = {"alias": state.alias, "name": state.name, "members": members,
                "power": dict(sorted(state.power_users().items()))}
        key = make_key(Provider.MATRIX, ROOM, lp)
        return Observed(key, spec, None, {"room_id": state.room_id})

    # Apply -----------------------------------------------------------------------------------------

    def apply(self, obj: ManagedObject) -> ApplyResult:
        spec = obj.spec
        alias = str(spec.get("alias") or "")
        if not alias.startswith(f"#{obj.name}:"):
            raise PermanentError(f"{obj.key}: alias {alias!r} does not name #{obj.name}:<server>")
        room_id = self.resolve(alias)
        created = False
        if room_id is None:
            room_id, created = self._create_room(obj, alias)
        state = self._room_state(room_id, alias)
        self._check_room_owner(obj, state, alias)
        wrote = self._converge(obj, state)
        outcome = Outcome.CREATED if created else Outcome.CONFIGURED if wrote else Outcome.UNCHANGED
        return ApplyResult(outcome, ids={"room_id": room_id})

    def resolve(self, alias: str) -> str | None:
        try:
            answer = self.s.call("GET", f"{CLIENT}/directory/room/{q(alias)}", f"resolve {alias}")
        except MatrixError as exc:
            if exc.errcode == "M_NOT_FOUND" or exc.status == 404:
                return None
            raise
        room_id = answer.get("room_id")
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise UnexpectedAnswer(f"resolve {alias}: the answer's `room_id` is {shape(room_id)}, not a room ID")
        return room_id

    def _create_room(self, obj: ManagedObject, alias: str) -> tuple[str, bool]:
        s = self.s
        spec = obj.spec
        users = self._power_users(spec, frozenset({s.actor}), self._default_version())
        invite = sorted(set(spec.get("members") or ()) - {s.actor})
        body = {
            "room_alias_name": obj.name, "name": str(spec.get("name") or ""), "preset": "private_chat",
            "visibility": "private", "is_direct": bool(spec.get("is_direct")), "invite": invite,
            "power_level_content_override": {"users": users},
            "initial_state": [{"type": ROOM_MARKER, "state_key": "",
                               "content": {"instance": s.instance, "alias": alias}}],
        }
        try:
            answer = s.call("POST", f"{CLIENT}/createRoom", f"create room {alias}", body=body)
        except MatrixError as exc:
            # The alias is taken (a run cut short, or a createRoom that failed after claiming it): converge.
            room_id = self.resolve(alias)
            if room_id is None:
                raise
            log.info("create room %s: %s; repairing the room the alias names", alias, exc.errcode or exc)
            return room_id, False
        room_id = answer.get("room_id")
        if not isinstance(room_id, str) or not room_id:
            raise UnexpectedAnswer(f"create room {alias}: the answer has no room_id; the next pass finds the room "
                                   "by its alias")
        log.info("created room %s (%s)", alias, room_id)
        return room_id, True

    def _default_version(self) -> str:
        if self._versions is None:
            caps = self.s.call("GET", f"{CLIENT}/capabilities", "read the homeserver's capabilities")
            versions = (caps.get("capabilities") or {}).get("m.room_versions") or {}
            self._versions = str(versions.get("default") or "1") if isinstance(versions, Mapping) else "1"
        return self._versions

    def _room_state(self, room_id: str, alias: str) -> RoomState:
        what = f"read the state of {alias} ({room_id})"
        try:
            events = self.s.http.request_list("GET", f"{CLIENT}/rooms/{q(room_id)}/state", what=what,
                                              token=self.s.actor_token())
        except MatrixError as exc:
            if exc.status == 403:
                raise PermanentError(f"{alias} names room {room_id}, which the actor {self.s.actor} is not in; "
                                     "it is not ours to manage (invite the actor, or free the alias)") from None
            raise
        return RoomState.of(room_id, events, what)

    def _check_room_owner(self, obj: ManagedObject, state: RoomState, alias: str) -> None:
        marker = state.marker
        if marker and marker.get("instance") == self.s.instance:
            return
        if marker and marker.get("instance"):
            raise PermanentError(f"{obj.key}: {alias} ({state.room_id}) is managed by another reconciler instance "
                                 f"({marker.get('instance')!r}); not touching it")
        creators = state.creators or frozenset()
        if self.s.actor not in creators and not self._created_by_actor(state):
            raise PermanentError(f"{obj.key}: {alias} ({state.room_id}) exists and was not created by this "
                                 f"reconciler; it is left alone — free the alias or rename the resource")

    def _created_by_actor(self, state: RoomState) -> bool:
        return self.s.actor in state.creators

    def _power_users(self, spec: Mapping[str, Any], creators: frozenset[str], version: str) -> dict[str, int]:
        power = spec.get("power") or {}
        users = {str(u): int(v) for u, v in power.items()} if isinstance(power, Mapping) else {}
        if version in CREATORS_IMPLICIT:
            users = {u: v for u, v in users.items() if u not in creators}
        return dict(sorted(users.items()))

    def _converge(self, obj: ManagedObject, state: RoomState) -> bool:
        """Write what differs: marker, alias, name, power levels, membership. Whether anything was written."""
        s = self.s
        spec, room, alias = obj.spec, state.room_id, str(obj.spec.get("alias"))
        wrote = False

        def put(kind: str, content: Mapping[str, Any], what: str) -> None:
            nonlocal wrote
            s.call("PUT", f"{CLIENT}/rooms/{q(room)}/state/{q(kind)}/", f"{what} of {alias}", body=content)
            wrote = True

        marker = {"instance": s.instance, "alias": alias}
        if state.marker != marker:
            put(ROOM_MARKER, marker, "mark ownership")
        if state.alias != alias:
            put("m.room.canonical_alias", {"alias": alias}, "set the canonical alias")
        name = str(spec.get("name") or "")
        if state.name != name:
            put("m.room.name", {"name": name}, "set the name")
        creators = state.creators if state.version in CREATORS_IMPLICIT else frozenset()
        users = self._power_users(spec, creators, state.version)
        current = state.power or {}
        if current.get("users") != users:
            content: dict[str, Any] = dict(current) if current else {
                "users_default": 0, "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
                "invite": 50}
            content["users"] = users
            put("m.room.power_levels", content, "set power levels")
        members = set(spec.get("members") or ()) - {s.actor}
        agents = self._agents(members)
        for user in sorted(members):
            membership = state.members.get(user)
            if membership == "ban":
                s.call("POST", f"{CLIENT}/rooms/{q(room)}/unban", f"unban {user} in {alias}",
                       body={"user_id": user})
                membership, wrote = "leave", True
            if membership not in ("join", "invite"):
                s.call("POST", f"{CLIENT}/rooms/{q(room)}/invite", f"invite {user} to {alias}",
                       body={"user_id": user})
                membership, wrote = "invite", True
            if user in agents and membership != "join":
                self._join_as(user, room, alias)
                wrote = True
        for user in sorted(state.present - members - {s.actor}):
            s.call("POST", f"{CLIENT}/rooms/{q(room)}/kick", f"remove {user} from {alias}",
                   body={"user_id": user, "reason": "not a member of this room in the org chart"})
            wrote = True
        return wrote

    def _agents(self, members: Iterable[str]) -> set[str]:
        """Which members are agents of ours (they must be joined; humans are only invited)."""
        s = self.s
        records = s.all_records()
        agents = {str(r.get("user_id")) for r in records.values() if s.ours(r) and r.get("kind") == "agent"
                  and not r.get("removed") and not r.get("deactivated")}
        return set(members) & agents

    def _join_as(self, user: str, room: str, alias: str) -> None:
        """Join `user` (an agent of ours) with its own token, or a short session when that token is not at hand."""
        s = self.s
        lp = localpart(user)
        token = s.stored(f"matrix/{lp}/token")
        temporary = False
        if not token or s.whoami(token) != user:
            password = s.stored(f"matrix/{lp}/password")
            if not password:
                raise PermanentError(f"join {user} to {alias}: neither its token nor its password is in the "
                                     "secret store")
            token, temporary = s.login(user, password, JOIN_DEVICE), True
        s.call("POST", f"{CLIENT}/join/{q(room)}", f"{user} joins {alias}", token=token, body={})
        if temporary:
            s.logout(token, user)

    # Delete ----------------------------------------------------------------------------------------

    def close(self, obj: ManagedObject) -> Outcome:
        s = self.s
        alias = str(obj.spec.get("alias") or f"#{obj.name}:{s.server}")
        room_id = self.resolve(alias)
        if room_id is None:
            return Outcome.UNCHANGED
        state = self._room_state(room_id, alias)
        marker = state.marker or {}
        if marker.get("instance") != s.instance and not (not marker and self._created_by_actor(state)):
            return Outcome.UNCHANGED  # not ours: never touched
        for user in sorted(state.present - {s.actor}):
            s.call("POST", f"{CLIENT}/rooms/{q(room_id)}/kick", f"remove {user} from {alias} (closing it)",
                   body={"user_id": user, "reason": "the room was removed from the org chart"})
        name = state.name or obj.name
        if not name.endswith("(closed)"):
            s.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/state/m.room.name/", f"mark {alias} closed",
                   body={"name": f"{name} (closed)"})
        if state.alias:
            s.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/state/m.room.canonical_alias/",
                   f"clear the alias of {alias}", body={})
        s.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/state/{ROOM_MARKER}/", f"mark {alias} closed",
               body={"instance": s.instance, "alias": alias, "closed": True})
        try:
            s.call("DELETE", f"{CLIENT}/directory/room/{q(alias)}", f"release the alias {alias}")
        except MatrixError as exc:
            if exc.status != 404:
                raise
        log.info("closed room %s (%s)", alias, room_id)
        return Outcome.DELETED

    # Escalation ------------------------------------------------------------------------------------

    def post_notice(self, room: str, text: str) -> None:
        """Post `text` as a notice (escalation, SPEC §6) to `room`, an alias or a room ID the actor is in."""
        room_id = self.resolve(room) if room.startswith("#") else room
        if room_id is None:
            raise PermanentError(f"post a notice to {room}: no such room")
        self.s.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                    f"post a notice to {room}", body={"msgtype": "m.notice", "body": REDACTOR.redact(text)})
