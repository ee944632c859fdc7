"""The Matrix backend: accounts and rooms on a homeserver, through the client-server API (Synapse's admin API optional).

Provider `matrix`, types `user` (key `matrix/user/<localpart>`) and `room` (key `matrix/room/<alias localpart>`),
as compiled by gitops/compile/{identities,rooms}.py. docs/matrix.md is the operator's view.

This module is the class the registry names (`backends.matrix:MatrixBackend`): its declarations and the four
protocol methods, which hand each type to its half — `matrix_accounts.Accounts` (users) and
`matrix_rooms.Rooms` (rooms) — over one `matrix_session.Session` (the actor's calls, logins, our account
records), on `matrix_http.MatrixHTTP` (requests, bounded retries, counts). In short:

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

**Deletion.** An account: an agent leaves every room it is in and its sessions are logged out (by a server-admin
actor when its credentials are gone); the account is deactivated only with `matrix.deactivate_removed: true`
(the admin API when its password is gone); our record is marked removed or deactivated. A room is *closed*:
every member but the actor removed, its name marked "(closed)", its alias released, our marker marked closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backends.matrix_session import ROOM, USER, Session, sync_filter
from gitops.objects import ManagedObject, Provider
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
from gitops.settings.model import MatrixSettings

__all__ = ["MatrixBackend"]


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
        # Imported here, not at the top: reading the class's traits (every plan does) must not import httpx.
        from backends.matrix_accounts import Accounts
        from backends.matrix_http import DEFAULT_TIMEOUT, MatrixHTTP
        from backends.matrix_rooms import Rooms

        settings = ctx.settings if isinstance(ctx, BackendContext) else ctx
        self.settings = settings if isinstance(settings, MatrixSettings) else MatrixSettings()
        self.ctx = ctx if isinstance(ctx, BackendContext) else BackendContext(settings=self.settings)
        self.instance = self.ctx.instance
        if not self.settings.url:
            raise PermanentError("matrix.url is not set: the Matrix backend needs the homeserver's address")
        timeout = float(getattr(self.settings, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)
        http = client if client is not None else self.ctx.client(timeout=timeout)
        self.http = MatrixHTTP(self.settings.url, http, attempts=int(getattr(self.settings, "retries", 5) or 1))
        self.session = Session(self.settings, self.ctx, self.http)
        self.server = self.session.server
        self.actor = self.session.actor
        self.accounts = Accounts(self.session)
        self.rooms = Rooms(self.session)

    def observe(self, scope: Scope) -> dict[str, Observed]:
        wanted = {t for t in self.types if t in scope.names or not scope.exact}
        if not wanted:
            return {}
        from backends.matrix_http import CLIENT

        answer = self.session.call("GET", f"{CLIENT}/sync", "sync (observe)", params={
            "filter": sync_filter(), "full_state": "true", "timeout": "0", "set_presence": "offline"})
        records = self.session.records_from(answer, "sync (observe)")
        rooms = self.rooms.rooms_from(answer, "sync (observe)")
        out: dict[str, Observed] = {}
        if USER in wanted:
            out.update(self.accounts.observe(records))
        if ROOM in wanted:
            agents = {str(r.get("user_id")) for r in records.values() if r.get("kind") == "agent"}
            for state in rooms:
                seen = self.rooms.observed(state, agents)
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
            return self.accounts.apply(obj, action, resolve)
        return self.rooms.apply(obj)

    def delete(self, obj: ManagedObject) -> Outcome:
        if obj.type == USER:
            return self.accounts.delete(obj)
        if obj.type == ROOM:
            return self.rooms.close(obj)
        raise PermanentError(f"{obj.key} is not served by the Matrix backend (user, room)")

    def close(self) -> None:
        self.http.close()

    def post_notice(self, room: str, text: str) -> None:
        """Post `text` as a notice (escalation, SPEC §6) to `room`, an alias or a room ID the actor is in."""
        self.rooms.post_notice(room, text)
