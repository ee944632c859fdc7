"""The Matrix backend's session as the actor: authenticated calls, logins, our account records, stored secrets.

Shared by the account and room halves of the backend (`backends/matrix_accounts.py`, `backends/matrix_rooms.py`):
the actor's token (found once, logged in when needed), the cache of our account records (the actor's account
data `io.hiclaw.gitops.user.<localpart>`, refreshed by every observation), whether the actor is a server admin,
and the few calls both halves make as other users (log in, log out, whoami). Also the observation's `/sync`
filter, which both halves read from.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from backends.matrix_http import ADMIN, CLIENT, MatrixError, MatrixHTTP, UnexpectedAnswer, q, shape
from gitops.providers.protocol import BackendContext, PermanentError
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


class Session:
    """The actor on one homeserver, and what the backend remembers between calls. Thread-safe."""

    def __init__(self, settings: MatrixSettings, ctx: BackendContext, http: MatrixHTTP) -> None:
        self.settings = settings
        self.ctx = ctx
        self.instance = ctx.instance
        self.http = http
        self.server = settings.server_name
        self.actor = f"@{settings.actor}:{self.server}"
        self._lock = threading.RLock()
        self._token = ""
        self._records: dict[str, dict[str, Any]] | None = None  # localpart -> our record (actor account data)
        self._admin: bool | None = None

    def call(self, method: str, path: str, what: str, *, token: str | None = None, body: Any = None,
             params: Mapping[str, str] | None = None) -> dict[str, Any]:
        anonymous = path.endswith(("/login", "/register"))
        auth = token if token is not None else "" if anonymous else self.actor_token()
        return self.http.request(method, path, what=what, token=auth, body=body, params=params)

    def actor_token(self) -> str:
        with self._lock:
            if self._token:
                return self._token
            s = self.settings
            token = optional_secret(s.actor_token_env, s.actor_token_file, key="matrix.actor_token")
            if token and self.whoami(token) == self.actor:
                self._token = token
                return token
            password = optional_secret(s.actor_password_env, s.actor_password_file, key="matrix.actor_password")
            if password is None and not s.actor_user:
                password = optional_secret(s.admin_password_env, s.admin_password_file, key="matrix.admin_password")
            if not password:
                raise PermanentError(f"the actor {self.actor} has no working credentials: set matrix.actor_token_env "
                                     "or _file, or matrix.actor_password_env or _file")
            self._token = self.login(self.actor, password, ACTOR_DEVICE)
            return self._token

    # Our account records ---------------------------------------------------------------------------

    def ours(self, record: Mapping[str, Any] | None) -> bool:
        return bool(record) and record is not None and record.get("instance") == self.instance

    def records_from(self, answer: Mapping[str, Any], what: str) -> dict[str, dict[str, Any]]:
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

    def all_records(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._records is not None:
                return dict(self._records)
        answer = self.call("GET", f"{CLIENT}/sync", "sync (account records)", params={
            "filter": sync_filter(rooms=False), "timeout": "0"})
        return self.records_from(answer, "sync (account records)")

    def record(self, lp: str) -> dict[str, Any] | None:
        try:
            answer = self.call("GET", f"{CLIENT}/user/{q(self.actor)}/account_data/{q(USER_RECORD + lp)}",
                               f"read the record of @{lp}")
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise
        return answer or None

    def put_record(self, lp: str, content: Mapping[str, Any]) -> None:
        self.call("PUT", f"{CLIENT}/user/{q(self.actor)}/account_data/{q(USER_RECORD + lp)}",
                  f"record @{lp}", body=dict(content))
        with self._lock:
            if self._records is not None:
                self._records[lp] = dict(content)

    # Secrets, the admin API, other users' sessions ------------------------------------------------------

    def stored(self, name: str) -> str | None:
        if self.ctx.secrets is None:
            return None
        try:
            value = self.ctx.secrets.get(name)
        except (KeyError, LookupError, ValueError, OSError):
            return None
        except Exception:  # the store's own "missing" error
            return None
        return value or None

    def is_admin(self) -> bool:
        if self._admin is None:
            self.admin_users()
        return bool(self._admin)

    def admin_users(self) -> dict[str, Mapping[str, Any]] | None:
        """Every account on the server (Synapse's admin API), or None when the actor may not list them."""
        if self._admin is False:
            return None
        accounts: dict[str, Mapping[str, Any]] = {}
        start = "0"
        while True:
            try:
                page = self.call("GET", f"{ADMIN}/v2/users", "list accounts (admin API)", params={
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

    def login(self, user_id: str, password: str, device: str) -> str:
        answer = self.call("POST", f"{CLIENT}/login", f"log in as {user_id}", body={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password, "device_id": device, "initial_device_display_name": "hiclaw-gitops"})
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise UnexpectedAnswer(f"log in as {user_id}: the homeserver's answer has no access token")
        REDACTOR.add(token)
        return token

    def logout(self, token: str, user_id: str) -> None:
        try:
            self.call("POST", f"{CLIENT}/logout", f"log out a session of {user_id}", token=token)
        except MatrixError as exc:
            log.info("logging out a session of %s: %s", user_id, exc)

    def whoami(self, token: str) -> str:
        try:
            answer = self.call("GET", f"{CLIENT}/account/whoami", "check a stored access token", token=token)
        except MatrixError as exc:
            if exc.status in (401, 403):
                return ""
            raise
        user = answer.get("user_id")
        return user if isinstance(user, str) else ""
