"""The Matrix backend: accounts and rooms on a homeserver, through the client-server API (Synapse's admin API optional).

Provider `matrix`, types `user` (key `matrix/user/<localpart>`) and `room` (key `matrix/room/<alias localpart>`),
as compiled by gitops/compile/{identities,rooms}.py. docs/matrix.md is the operator's view; in short:

**Acting.** Everything is done as the *actor* (settings `matrix.actor_user`, a dedicated account by default in
the local stack), logged in with its token or password; agents are joined to rooms by logging in as them.

**Ownership.** An account is ours when the actor's account data holds our record of it
(`io.hiclaw.gitops.user.<localpart>`, written *before* registering, with this instance's label, the kind and the
display name); a room is ours when its `io.hiclaw.gitops.room` state event carries our instance label, or —
a creation cut short before that event was written — when the actor created it. Anything else under one of
our names is refused, never adopted.

**Observation** is one filtered `/sync` as the actor (full state of every joined room: aliases, names,
members, power levels, our marker; and our account records), plus Synapse's user list when the actor is a
server admin (one request per 1,000 accounts) to see deactivated or vanished accounts. Never one request per
object. Rooms report `members` as joined ∪ invited, except that an agent of ours that is only invited does not
count (agents must be joined); `power` is `m.room.power_levels.users` plus the room's creators at 100 (room
version 12 gives creators power implicitly and forbids listing them).

**Accounts** are registered with the registration-token flow (`m.login.registration_token`, what HiClaw's own
homeserver offers) or, with `matrix.registration: shared_secret`, Synapse's shared-secret admin registration.
An agent's access token is an output: kept while `whoami` accepts it, otherwise issued again by a login with a
fixed device id (so logins do not pile up devices). A human's password is their initial password; their
session is logged out after registration.

**Rooms** are found by alias. Missing: created with preset `private_chat`, explicit power levels (never the
creator in `users` on room version 12), our marker in the initial state, and the members invited. Then, for
a new room and an existing one alike, the state is converged: marker, canonical alias, name, power levels,
membership — missing members invited, agents joined with their own token, anyone else kicked (the actor
excepted). A `createRoom` that failed after claiming the alias leaves a half-built room: it is found by alias
and repaired, never duplicated. Nothing is written that already holds.

**Deletion.** An account: an agent leaves every room it is in and its sessions are logged out; the account is
deactivated only with `matrix.deactivate_removed: true`; our record is marked removed. A room is *closed*:
every member but the actor removed, its name marked "(closed)", its alias released, our marker marked closed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backends.matrix_http import ADMIN, CLIENT, DEFAULT_TIMEOUT, MatrixError, MatrixHTTP, UnexpectedAnswer, q, shape
from gitops.objects import ManagedObject, Provider, make_key
from gitops.providers.protocol import (
    ApplyResult,
    BackendContext,
    Observed,
    Outcome,
    PermanentError,
    Resolve,
    Scope,
    TypeTraits,
)
from gitops.settings.load import REDACTOR, optional_secret
from gitops.settings.model import MatrixSettings

log = logging.getLogger("hiclaw_gitops.backend.matrix")

USER, ROOM = "user", "room"
USER_RECORD = "io.hiclaw.gitops.user."  # + localpart: actor account data, our record of an account
ROOM_MARKER = "io.hiclaw.gitops.room"  # room state event (state key ""): {instance, alias, closed?}
AGENT_DEVICE = "HICLAW_GITOPS"  # the device an agent's own token belongs to
JOIN_DEVICE = "HICLAW_GITOPS_JOIN"  # a short session to join an agent whose token is not at hand
ACTOR_DEVICE = "HICLAW_GITOPS_ACTOR"
STATE_TYPES = ("m.room.create", "m.room.canonical_alias", "m.room.name", "m.room.member", "m.room.power_levels",
               ROOM_MARKER)
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": [USER_RECORD + "*"]},
    "room": {
        "state": {"types": list(STATE_TYPES), "lazy_load_members": False},
        "timeline": {"limit": 0, "types": []},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
        "include_leave": False,
    },
}
CREATORS_IMPLICIT = frozenset({"12"})  # room versions whose creators hold power implicitly (MSC4289)
USER_PAGE = 1000


def sync_filter(rooms: bool = True) -> str:
    """The observation's /sync filter, made unique per call: Synapse caches a /sync answer for its exact request
    for two minutes by default (`caches.sync_response_cache_duration`), so repeating a request would read state
    from before our own writes. A room that cannot exist, excluded by a fresh ID, makes the request new."""
    room: dict[str, Any] = {**SYNC_FILTER["room"], "not_rooms": [f"!{uuid.uuid4().hex}:hiclaw-gitops.invalid"]}
    if not rooms:
        room["rooms"] = []
    return json.dumps({**SYNC_FILTER, "room": room})


def localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


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


class MatrixBackend:
    """Accounts and rooms on one homeserver (see the module docstring)."""

    provider = Provider.MATRIX
    types: tuple[str, ...] = (USER, ROOM)
    traits: Mapping[str, TypeTraits] = {
        # The password is never readable; the kind (agent or human) is ours alone. A change of kind means the
        # account changes hands: every session is logged out and credentials are issued again.
        USER: TypeTraits(replace_on=frozenset({"kind"}), write_only=frozenset({"password", "kind"})),
        # A room's preset and direct flag only shape its creation.
        ROOM: TypeTraits(write_only=frozenset({"preset", "is_direct"})),
    }

    def __init__(self, ctx: BackendContext | MatrixSettings | None = None, client: Any = None) -> None:
        settings = ctx.settings if isinstance(ctx, BackendContext) else ctx
        self.settings = settings if isinstance(settings, MatrixSettings) else MatrixSettings()
        self.ctx = ctx if isinstance(ctx, BackendContext) else BackendContext(settings=self.settings)
        self.instance = self.ctx.instance
        if not self.settings.url:
            raise PermanentError("matrix.url is not set: the Matrix backend needs the homeserver's address")
        timeout = float(getattr(self.settings, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)
        http = client if client is not None else self.ctx.client(timeout=timeout)
        self.http = MatrixHTTP(self.settings.url, http, attempts=int(getattr(self.settings, "retries", 5) or 1))
        self.server = self.settings.server_name
        self.actor = f"@{self.settings.actor}:{self.server}"
        self._lock = threading.RLock()
        self._token = ""
        self._records: dict[str, dict[str, Any]] | None = None  # localpart -> our record (actor account data)
        self._admin: bool | None = None
        self._versions: str | None = None

    # Protocol --------------------------------------------------------------------------------------

    def observe(self, scope: Scope) -> dict[str, Observed]:
        wanted = {t for t in self.types if t in scope.names or not scope.exact}
        if not wanted:
            return {}
        answer = self._call("GET", f"{CLIENT}/sync", "sync (observe)", params={
            "filter": sync_filter(), "full_state": "true", "timeout": "0", "set_presence": "offline"})
        records = self._records_from(answer, "sync (observe)")
        rooms = self._rooms_from(answer, "sync (observe)")
        out: dict[str, Observed] = {}
        if USER in wanted:
            out.update(self._observe_users(records, rooms))
        if ROOM in wanted:
            agents = {str(r.get("user_id")) for r in records.values() if r.get("kind") == "agent"}
            for state in rooms:
                seen = self._observed_room(state, agents)
                if seen is not None:
                    out[seen.key] = seen
        if scope.exact:
            out = {k: v for k, v in out.items() if scope.wants(k)}
        return dict(sorted(out.items()))

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        if action not in ("create", "update", "replace"):
            raise PermanentError(f"{obj.key}: unknown action {action!r}")
        if obj.provider is not Provider.MATRIX or obj.type not in self.types:
            raise PermanentError(f"{obj.key} is not served by the Matrix backend (user, room)")
        if obj.type == USER:
            return self._apply_user(obj, action, resolve)
        return self._apply_room(obj)

    def delete(self, obj: ManagedObject) -> Outcome:
        if obj.type == USER:
            return self._delete_user(obj)
        if obj.type == ROOM:
            return self._close_room(obj)
        raise PermanentError(f"{obj.key} is not served by the Matrix backend (user, room)")

    def close(self) -> None:
        self.http.close()

    def post_notice(self, room: str, text: str) -> None:
        """Post `text` as a notice (escalation, SPEC §6) to `room`, an alias or a room ID the actor is in."""
        room_id = self._resolve(room) if room.startswith("#") else room
        if room_id is None:
            raise PermanentError(f"post a notice to {room}: no such room")
        self._call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                   f"post a notice to {room}", body={"msgtype": "m.notice", "body": REDACTOR.redact(text)})

    # Observation -----------------------------------------------------------------------------------

    def _records_from(self, answer: Mapping[str, Any], what: str) -> dict[str, dict[str, Any]]:
        events = (answer.get("account_data") or {}).get("events") if isinstance(answer, Mapping) else None
        if events is not None and not isinstance(events, list):
            raise UnexpectedAnswer(f"{what}: `account_data.events` is {shape(events)}, not a list")
        records: dict[str, dict[str, Any]] = {}
        for event in events or []:
            kind = event.get("type") if isinstance(event, Mapping) else None
            content = event.get("content") if isinstance(event, Mapping) else None
            if isinstance(kind, str) and kind.startswith(USER_RECORD) and isinstance(content, Mapping):
                records[kind[len(USER_RECORD):]] = dict(content)
        with self._lock:
            self._records = dict(records)
        return records

    def _rooms_from(self, answer: Mapping[str, Any], what: str) -> list[RoomState]:
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

    def _ours(self, record: Mapping[str, Any] | None) -> bool:
        return bool(record) and record is not None and record.get("instance") == self.instance

    def _observe_users(self, records: Mapping[str, Mapping[str, Any]], rooms: list[RoomState]) -> dict[str, Observed]:
        accounts = self._admin_users()
        names: dict[str, str] = {}
        for state in rooms:  # display names as the rooms show them (for servers without an admin API)
            for user in state.members:
                names.setdefault(user, "")
        out: dict[str, Observed] = {}
        for lp, record in records.items():
            if not self._ours(record) or record.get("removed") or record.get("deactivated"):
                continue
            user_id = str(record.get("user_id") or f"@{lp}:{self.server}")
            displayname = str(record.get("displayname") or "")
            if accounts is not None:
                account = accounts.get(user_id)
                if account is None or account.get("deactivated"):
                    continue  # gone from the server: absent
                displayname = str(account.get("displayname") or "")
            key = make_key(Provider.MATRIX, USER, lp)
            out[key] = Observed(key, {"user_id": user_id, "displayname": displayname}, None, {"user_id": user_id})
        return out

    def _admin_users(self) -> dict[str, Mapping[str, Any]] | None:
        """Every account on the server (Synapse's admin API), or None when the actor may not list them."""
        if self._admin is False:
            return None
        accounts: dict[str, Mapping[str, Any]] = {}
        start = "0"
        while True:
            try:
                page = self._call("GET", f"{ADMIN}/v2/users", "list accounts (admin API)", params={
                    "from": start, "limit": str(USER_PAGE), "guests": "false", "deactivated": "true"})
            except MatrixError as exc:
                if exc.status in (400, 401, 403, 404):
                    self._admin = False
                    return None
                raise
            self._admin = True
            users = page.get("users")
            if not isinstance(users, list):
                raise UnexpectedAnswer(f"list accounts (admin API): `users` is {shape(users)}, not a list")
            for user in users:
                if isinstance(user, Mapping) and isinstance(user.get("name"), str):
                    accounts[user["name"]] = user
            nxt = page.get("next_token")
            if nxt is None or not users:
                return accounts
            start = str(nxt)

    def _observed_room(self, state: RoomState, agents: set[str]) -> Observed | None:
        marker = state.marker or {}
        if marker.get("instance") != self.instance or marker.get("closed"):
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

    # Accounts --------------------------------------------------------------------------------------

    def _apply_user(self, obj: ManagedObject, action: str, resolve: Resolve) -> ApplyResult:
        spec = obj.spec
        user_id, kind = str(spec.get("user_id") or ""), str(spec.get("kind") or "agent")
        lp = localpart(user_id)
        if not user_id.startswith("@") or server_of(user_id) != self.server or lp != obj.name:
            raise PermanentError(f"{obj.key}: user {user_id!r} is not @{obj.name}:{self.server}; only accounts "
                                 "of this homeserver can be registered")
        password = str(resolve({"password": spec.get("password")}).get("password") or "")
        if not password:
            raise PermanentError(f"{obj.key}: no password to register {user_id} with")
        record = self._record(lp)
        if record and not self._ours(record):
            raise PermanentError(f"{obj.key}: {user_id} is recorded by another reconciler instance "
                                 f"({record.get('instance')!r}, this is {self.instance!r}); not touching it")
        claimed = not self._ours(record) or bool(record and (record.get("removed") or record.get("deactivated")))
        wanted = {"instance": self.instance, "user_id": user_id, "kind": kind,
                  "displayname": str(spec.get("displayname") or "")}
        previously_ours = self._ours(record)
        if claimed or record != wanted:
            self._put_record(lp, wanted)  # before registering: a crash in between still knows it is ours
        token, created = self._account(obj, user_id, password, previously_ours, record)
        wrote = created or claimed
        if action == "replace" and not created:
            self._call("POST", f"{CLIENT}/logout/all", f"log out every session of {user_id}", token=token)
            token, wrote = self._login(user_id, password, AGENT_DEVICE), True
        wrote = self._displayname(user_id, token, wanted["displayname"]) or wrote
        secrets: dict[str, str] = {}
        if kind == "agent":
            secrets = dict.fromkeys(obj.produces, token)
        else:  # a human's own session is theirs to open: ours ends here
            self._logout(token, user_id)
        outcome = Outcome.CREATED if created else Outcome.CONFIGURED if wrote else Outcome.UNCHANGED
        return ApplyResult(outcome, secrets, {"user_id": user_id})

    def _account(self, obj: ManagedObject, user_id: str, password: str, ours: bool,
                 record: Mapping[str, Any] | None) -> tuple[str, bool]:
        """A valid access token of the account, registering it when missing; (token, registered now)."""
        lp = localpart(user_id)
        stored = self._stored(f"matrix/{lp}/token") if obj.produces else None
        if stored and self._whoami(stored) == user_id:
            return stored, False
        try:
            return self._register(user_id, password), True
        except MatrixError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
        if not ours:  # it existed before we claimed it: someone else's account
            self._put_record(lp, dict(record or {}) if record else {})
            raise PermanentError(f"{obj.key}: {user_id} already exists and was not registered by this reconciler "
                                 f"(instance {self.instance}); it is left alone — remove it, or declare the human "
                                 "with the gitops.hiclaw.io/matrix-user-id annotation to only invite it")
        try:
            return self._login(user_id, password, AGENT_DEVICE), False
        except MatrixError as exc:
            if exc.errcode not in ("M_FORBIDDEN", "M_USER_DEACTIVATED"):
                raise
            if not self._is_admin():
                raise PermanentError(
                    f"{obj.key}: {user_id} is ours but its password no longer works ({exc.errcode}) and the actor "
                    "is not a server admin, so it cannot be reset; reset it on the server to the value of "
                    f"`hiclaw-gitops secrets get matrix/{lp}/password`") from None
        self._call("PUT", f"{ADMIN}/v2/users/{q(user_id)}", f"reactivate {user_id} and reset its password (admin API)",
                   body={"deactivated": False, "password": password, "logout_devices": False})
        return self._login(user_id, password, AGENT_DEVICE), False

    def _register(self, user_id: str, password: str) -> str:
        lp = localpart(user_id)
        what = f"register {user_id}"
        if self.settings.registration == "shared_secret":
            secret = optional_secret(self.settings.registration_shared_secret_env,
                                     self.settings.registration_shared_secret_file,
                                     key="matrix.registration_shared_secret")
            if not secret:
                raise PermanentError(f"{what}: matrix.registration is shared_secret but no "
                                     "matrix.registration_shared_secret_env/_file is set")
            nonce = self._call("GET", f"{ADMIN}/v1/register", f"{what}: nonce").get("nonce")
            if not isinstance(nonce, str):
                raise UnexpectedAnswer(f"{what}: the registration nonce is {shape(nonce)}, not a string")
            mac = hmac.new(secret.encode(), f"{nonce}\0{lp}\0{password}\0notadmin".encode(), hashlib.sha1)
            answer = self._call("POST", f"{ADMIN}/v1/register", what, body={
                "nonce": nonce, "username": lp, "password": password, "admin": False, "mac": mac.hexdigest()})
        else:
            token = optional_secret(self.settings.registration_token_env, self.settings.registration_token_file,
                                    key="matrix.registration_token")
            if not token:
                raise PermanentError(f"{what}: no registration token: set matrix.registration_token_env or _file "
                                     "(or matrix.registration: shared_secret on Synapse)")
            body: dict[str, Any] = {"username": lp, "password": password, "inhibit_login": False,
                                    "device_id": AGENT_DEVICE, "initial_device_display_name": "hiclaw-gitops"}
            answer = self._interactive(f"{CLIENT}/register", what, body, {
                "m.login.registration_token": {"type": "m.login.registration_token", "token": token},
                "m.login.dummy": {"type": "m.login.dummy"}})
        access = answer.get("access_token")
        if not isinstance(access, str) or not access:
            raise UnexpectedAnswer(f"{what}: the homeserver's answer has no access token")
        REDACTOR.add(access)
        log.info("registered %s", user_id)
        return access

    def _interactive(self, path: str, what: str, body: dict[str, Any],
                     stages: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """A request behind user-interactive auth: answer each stage the homeserver asks for, in its order."""
        auth: dict[str, Any] | None = None
        for _ in range(len(stages) + 2):
            try:
                return self._call("POST", path, what, body={**body, "auth": auth} if auth else body)
            except MatrixError as exc:
                if exc.status != 401 or not exc.auth.get("session"):
                    raise
                done = exc.auth.get("completed") or []
                flows = [f.get("stages") or [] for f in exc.auth.get("flows") or [] if isinstance(f, Mapping)]
                flow = next((f for f in flows if f[:len(done)] == done and set(f) <= set(stages)), None)
                if flow is None or len(flow) <= len(done):
                    offered = "; ".join(" → ".join(map(str, f)) for f in flows) or "none"
                    raise PermanentError(f"{what}: the homeserver asks for authentication stages this reconciler "
                                         f"cannot complete (offered: {offered})") from None
                auth = {**stages[flow[len(done)]], "session": exc.auth["session"]}
        raise PermanentError(f"{what}: the homeserver kept asking for more authentication stages")

    def _login(self, user_id: str, password: str, device: str) -> str:
        answer = self._call("POST", f"{CLIENT}/login", f"log in as {user_id}", body={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password, "device_id": device, "initial_device_display_name": "hiclaw-gitops"})
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise UnexpectedAnswer(f"log in as {user_id}: the homeserver's answer has no access token")
        REDACTOR.add(token)
        return token

    def _logout(self, token: str, user_id: str) -> None:
        try:
            self._call("POST", f"{CLIENT}/logout", f"log out a session of {user_id}", token=token)
        except MatrixError as exc:
            log.info("logging out a session of %s: %s", user_id, exc)

    def _whoami(self, token: str) -> str:
        try:
            answer = self._call("GET", f"{CLIENT}/account/whoami", "check a stored access token", token=token)
        except MatrixError as exc:
            if exc.status in (401, 403):
                return ""
            raise
        user = answer.get("user_id")
        return user if isinstance(user, str) else ""

    def _displayname(self, user_id: str, token: str, wanted: str) -> bool:
        what = f"display name of {user_id}"
        try:
            current = self._call("GET", f"{CLIENT}/profile/{q(user_id)}/displayname", f"read {what}")
        except MatrixError as exc:
            if exc.status != 404:
                raise
            current = {}
        if current.get("displayname") == wanted or not wanted:
            return False
        self._call("PUT", f"{CLIENT}/profile/{q(user_id)}/displayname", f"set {what}", token=token,
                   body={"displayname": wanted})
        return True

    def _delete_user(self, obj: ManagedObject) -> Outcome:
        lp = obj.name
        record = self._record(lp)
        if not self._ours(record) or record is None or record.get("removed") or record.get("deactivated"):
            return Outcome.UNCHANGED
        user_id = str(record.get("user_id") or f"@{lp}:{self.server}")
        password = self._stored(f"matrix/{lp}/password")
        token = self._stored(f"matrix/{lp}/token")
        if token and self._whoami(token) != user_id:
            token = None
        if token is None and password:
            try:
                token = self._login(user_id, password, JOIN_DEVICE)
            except MatrixError as exc:
                log.info("cannot log in as %s to remove it from its rooms: %s", user_id, exc)
        if token and record.get("kind") == "agent":
            joined = self._call("GET", f"{CLIENT}/joined_rooms", f"rooms of {user_id}", token=token)
            for room_id in joined.get("joined_rooms") or []:
                self._call("POST", f"{CLIENT}/rooms/{q(str(room_id))}/leave", f"{user_id} leaves {room_id}",
                           token=token, body={})
        deactivate = bool(self.settings.deactivate_removed)
        if token:
            if deactivate and password:
                self._call("POST", f"{CLIENT}/account/deactivate", f"deactivate {user_id}", token=token, body={
                    "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
                             "password": password}, "erase": False})
            else:
                self._call("POST", f"{CLIENT}/logout/all", f"log out every session of {user_id}", token=token)
        elif deactivate and self._is_admin():
            self._call("POST", f"{ADMIN}/v1/deactivate/{q(user_id)}", f"deactivate {user_id} (admin API)",
                       body={"erase": False})
        elif deactivate:
            raise PermanentError(f"{obj.key}: cannot deactivate {user_id}: no working credentials and the actor "
                                 "is not a server admin")
        self._put_record(lp, {**record, "deactivated" if deactivate else "removed": True})
        return Outcome.DELETED

    # Rooms -----------------------------------------------------------------------------------------

    def _apply_room(self, obj: ManagedObject) -> ApplyResult:
        spec = obj.spec
        alias = str(spec.get("alias") or "")
        if not alias.startswith(f"#{obj.name}:"):
            raise PermanentError(f"{obj.key}: alias {alias!r} does not name #{obj.name}:<server>")
        room_id = self._resolve(alias)
        created = False
        if room_id is None:
            room_id, created = self._create_room(obj, alias)
        state = self._room_state(room_id, alias)
        self._check_room_owner(obj, state, alias)
        wrote = self._converge(obj, state)
        outcome = Outcome.CREATED if created else Outcome.CONFIGURED if wrote else Outcome.UNCHANGED
        return ApplyResult(outcome, ids={"room_id": room_id})

    def _resolve(self, alias: str) -> str | None:
        try:
            answer = self._call("GET", f"{CLIENT}/directory/room/{q(alias)}", f"resolve {alias}")
        except MatrixError as exc:
            if exc.errcode == "M_NOT_FOUND" or exc.status == 404:
                return None
            raise
        room_id = answer.get("room_id")
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise UnexpectedAnswer(f"resolve {alias}: the answer's `room_id` is {shape(room_id)}, not a room ID")
        return room_id

    def _create_room(self, obj: ManagedObject, alias: str) -> tuple[str, bool]:
        spec = obj.spec
        users = self._power_users(spec, frozenset({self.actor}), self._default_version())
        invite = sorted(set(spec.get("members") or ()) - {self.actor})
        body = {
            "room_alias_name": obj.name, "name": str(spec.get("name") or ""), "preset": "private_chat",
            "visibility": "private", "is_direct": bool(spec.get("is_direct")), "invite": invite,
            "power_level_content_override": {"users": users},
            "initial_state": [{"type": ROOM_MARKER, "state_key": "",
                               "content": {"instance": self.instance, "alias": alias}}],
        }
        try:
            answer = self._call("POST", f"{CLIENT}/createRoom", f"create room {alias}", body=body)
        except MatrixError as exc:
            # The alias is taken (a run cut short, or a createRoom that failed after claiming it): converge.
            room_id = self._resolve(alias)
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
            caps = self._call("GET", f"{CLIENT}/capabilities", "read the homeserver's capabilities")
            versions = (caps.get("capabilities") or {}).get("m.room_versions") or {}
            self._versions = str(versions.get("default") or "1") if isinstance(versions, Mapping) else "1"
        return self._versions

    def _room_state(self, room_id: str, alias: str) -> RoomState:
        what = f"read the state of {alias} ({room_id})"
        try:
            events = self.http.request_list("GET", f"{CLIENT}/rooms/{q(room_id)}/state", what=what,
                                            token=self._actor_token())
        except MatrixError as exc:
            if exc.status == 403:
                raise PermanentError(f"{alias} names room {room_id}, which the actor {self.actor} is not in; "
                                     "it is not ours to manage (invite the actor, or free the alias)") from None
            raise
        return RoomState.of(room_id, events, what)

    def _check_room_owner(self, obj: ManagedObject, state: RoomState, alias: str) -> None:
        marker = state.marker
        if marker and marker.get("instance") == self.instance:
            return
        if marker and marker.get("instance"):
            raise PermanentError(f"{obj.key}: {alias} ({state.room_id}) is managed by another reconciler instance "
                                 f"({marker.get('instance')!r}); not touching it")
        creators = state.creators or frozenset()
        if self.actor not in creators and not self._created_by_actor(state):
            raise PermanentError(f"{obj.key}: {alias} ({state.room_id}) exists and was not created by this "
                                 f"reconciler; it is left alone — free the alias or rename the resource")

    def _created_by_actor(self, state: RoomState) -> bool:
        return self.actor in state.creators

    def _power_users(self, spec: Mapping[str, Any], creators: frozenset[str], version: str) -> dict[str, int]:
        power = spec.get("power") or {}
        users = {str(u): int(v) for u, v in power.items()} if isinstance(power, Mapping) else {}
        if version in CREATORS_IMPLICIT:
            users = {u: v for u, v in users.items() if u not in creators}
        return dict(sorted(users.items()))

    def _converge(self, obj: ManagedObject, state: RoomState) -> bool:
        """Write what differs: marker, alias, name, power levels, membership. Whether anything was written."""
        spec, room, alias = obj.spec, state.room_id, str(obj.spec.get("alias"))
        wrote = False

        def put(kind: str, content: Mapping[str, Any], what: str) -> None:
            nonlocal wrote
            self._call("PUT", f"{CLIENT}/rooms/{q(room)}/state/{q(kind)}/", f"{what} of {alias}", body=content)
            wrote = True

        marker = {"instance": self.instance, "alias": alias}
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
        members = set(spec.get("members") or ()) - {self.actor}
        agents = self._agents(members)
        for user in sorted(members):
            membership = state.members.get(user)
            if membership == "ban":
                self._call("POST", f"{CLIENT}/rooms/{q(room)}/unban", f"unban {user} in {alias}",
                           body={"user_id": user})
                membership, wrote = "leave", True
            if membership not in ("join", "invite"):
                self._call("POST", f"{CLIENT}/rooms/{q(room)}/invite", f"invite {user} to {alias}",
                           body={"user_id": user})
                membership, wrote = "invite", True
            if user in agents and membership != "join":
                self._join_as(user, room, alias)
                wrote = True
        for user in sorted(state.present - members - {self.actor}):
            self._call("POST", f"{CLIENT}/rooms/{q(room)}/kick", f"remove {user} from {alias}",
                       body={"user_id": user, "reason": "not a member of this room in the org chart"})
            wrote = True
        return wrote

    def _agents(self, members: Iterable[str]) -> set[str]:
        """Which members are agents of ours (they must be joined; humans are only invited)."""
        records = self._all_records()
        agents = {str(r.get("user_id")) for r in records.values() if self._ours(r) and r.get("kind") == "agent"
                  and not r.get("removed") and not r.get("deactivated")}
        return set(members) & agents

    def _join_as(self, user: str, room: str, alias: str) -> None:
        """Join `user` (an agent of ours) with its own token, or a short session when that token is not at hand."""
        lp = localpart(user)
        token = self._stored(f"matrix/{lp}/token")
        temporary = False
        if not token or self._whoami(token) != user:
            password = self._stored(f"matrix/{lp}/password")
            if not password:
                raise PermanentError(f"join {user} to {alias}: neither its token nor its password is in the "
                                     "secret store")
            token, temporary = self._login(user, password, JOIN_DEVICE), True
        self._call("POST", f"{CLIENT}/join/{q(room)}", f"{user} joins {alias}", token=token, body={})
        if temporary:
            self._logout(token, user)

    def _close_room(self, obj: ManagedObject) -> Outcome:
        alias = str(obj.spec.get("alias") or f"#{obj.name}:{self.server}")
        room_id = self._resolve(alias)
        if room_id is None:
            return Outcome.UNCHANGED
        state = self._room_state(room_id, alias)
        marker = state.marker or {}
        if marker.get("instance") != self.instance and not (not marker and self._created_by_actor(state)):
            return Outcome.UNCHANGED  # not ours: never touched
        for user in sorted(state.present - {self.actor}):
            self._call("POST", f"{CLIENT}/rooms/{q(room_id)}/kick", f"remove {user} from {alias} (closing it)",
                       body={"user_id": user, "reason": "the room was removed from the org chart"})
        name = state.name or obj.name
        if not name.endswith("(closed)"):
            self._call("PUT", f"{CLIENT}/rooms/{q(room_id)}/state/m.room.name/", f"mark {alias} closed",
                       body={"name": f"{name} (closed)"})
        if state.alias:
            self._call("PUT", f"{CLIENT}/rooms/{q(room_id)}/state/m.room.canonical_alias/",
                       f"clear the alias of {alias}", body={})
        self._call("PUT", f"{CLIENT}/rooms/{q(room_id)}/state/{ROOM_MARKER}/", f"mark {alias} closed",
                   body={"instance": self.instance, "alias": alias, "closed": True})
        try:
            self._call("DELETE", f"{CLIENT}/directory/room/{q(alias)}", f"release the alias {alias}")
        except MatrixError as exc:
            if exc.status != 404:
                raise
        log.info("closed room %s (%s)", alias, room_id)
        return Outcome.DELETED

    # Records, secrets, the actor ---------------------------------------------------------------------

    def _all_records(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._records is not None:
                return dict(self._records)
        answer = self._call("GET", f"{CLIENT}/sync", "sync (account records)", params={
            "filter": sync_filter(rooms=False), "timeout": "0"})
        return self._records_from(answer, "sync (account records)")

    def _record(self, lp: str) -> dict[str, Any] | None:
        try:
            answer = self._call("GET", f"{CLIENT}/user/{q(self.actor)}/account_data/{q(USER_RECORD + lp)}",
                                f"read the record of @{lp}")
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise
        return answer or None

    def _put_record(self, lp: str, content: Mapping[str, Any]) -> None:
        self._call("PUT", f"{CLIENT}/user/{q(self.actor)}/account_data/{q(USER_RECORD + lp)}",
                   f"record @{lp}", body=dict(content))
        with self._lock:
            if self._records is not None:
                self._records[lp] = dict(content)

    def _stored(self, name: str) -> str | None:
        if self.ctx.secrets is None:
            return None
        try:
            value = self.ctx.secrets.get(name)
        except (KeyError, LookupError, ValueError, OSError):
            return None
        except Exception:  # the store's own "missing" error
            return None
        return value or None

    def _is_admin(self) -> bool:
        if self._admin is None:
            self._admin_users()
        return bool(self._admin)

    def _actor_token(self) -> str:
        with self._lock:
            if self._token:
                return self._token
            s = self.settings
            token = optional_secret(s.actor_token_env, s.actor_token_file, key="matrix.actor_token")
            if token and self._whoami(token) == self.actor:
                self._token = token
                return token
            password = optional_secret(s.actor_password_env, s.actor_password_file, key="matrix.actor_password")
            if password is None and not s.actor_user:
                password = optional_secret(s.admin_password_env, s.admin_password_file, key="matrix.admin_password")
            if not password:
                raise PermanentError(f"the actor {self.actor} has no working credentials: set matrix.actor_token_env "
                                     "or _file, or matrix.actor_password_env or _file")
            self._token = self._login(self.actor, password, ACTOR_DEVICE)
            return self._token

    def _call(self, method: str, path: str, what: str, *, token: str | None = None, body: Any = None,
              params: Mapping[str, str] | None = None) -> dict[str, Any]:
        anonymous = path.endswith(("/login", "/register"))
        auth = token if token is not None else "" if anonymous else self._actor_token()
        return self.http.request(method, path, what=what, token=auth, body=body, params=params)
