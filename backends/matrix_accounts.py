"""Matrix accounts (`matrix/user/<localpart>`): observed from our records, registered, logged in, retired.

An account is ours when the actor's account data holds our record of it (written *before* registering, so a
crash in between still knows it is ours). Registration uses the registration-token flow, or Synapse's
shared-secret admin registration with `matrix.registration: shared_secret`. An agent's access token is an
output: kept while `whoami` accepts it, otherwise issued again by a login with a fixed device id. A human's
password is their initial password; our session ends after registration. A removed account leaves its rooms
(agents) and is logged out — with its own credentials, else by a server-admin actor — and is deactivated only
with `matrix.deactivate_removed: true` (through the client API with its password, else the admin API).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from backends.matrix_http import ADMIN, CLIENT, MatrixError, UnexpectedAnswer, q, shape
from backends.matrix_session import AGENT_DEVICE, JOIN_DEVICE, USER, Session, localpart, log, server_of
from gitops.objects import ManagedObject, Provider, make_key
from gitops.providers.protocol import ApplyResult, Observed, Outcome, PermanentError, Resolve
from gitops.settings.load import REDACTOR, optional_secret


class Accounts:
    """The `user` type of the Matrix backend, acting through the actor's session."""

    def __init__(self, session: Session) -> None:
        self.s = session

    # Observation -----------------------------------------------------------------------------------

    def observe(self, records: Mapping[str, Mapping[str, Any]]) -> dict[str, Observed]:
        s = self.s
        accounts = s.admin_users()
        out: dict[str, Observed] = {}
        for lp, record in records.items():
            if not s.ours(record) or record.get("removed") or record.get("deactivated"):
                continue
            user_id = str(record.get("user_id") or f"@{lp}:{s.server}")
            displayname = str(record.get("displayname") or "")
            if accounts is not None:
                account = accounts.get(user_id)
                if account is None or account.get("deactivated"):
                    continue  # gone from the server: absent
                displayname = str(account.get("displayname") or "")
            key = make_key(Provider.MATRIX, USER, lp)
            out[key] = Observed(key, {"user_id": user_id, "displayname": displayname}, None, {"user_id": user_id})
        return out

    # Apply -----------------------------------------------------------------------------------------

    def apply(self, obj: ManagedObject, action: str, resolve: Resolve) -> ApplyResult:
        s = self.s
        spec = obj.spec
        user_id, kind = str(spec.get("user_id") or ""), str(spec.get("kind") or "agent")
        lp = localpart(user_id)
        if not user_id.startswith("@") or server_of(user_id) != s.server or lp != obj.name:
            raise PermanentError(f"{obj.key}: user {user_id!r} is not @{obj.name}:{s.server}; only accounts "
                                 "of this homeserver can be registered")
        password = str(resolve({"password": spec.get("password")}).get("password") or "")
        if not password:
            raise PermanentError(f"{obj.key}: no password to register {user_id} with")
        record = s.record(lp)
        if record and not s.ours(record):
            raise PermanentError(f"{obj.key}: {user_id} is recorded by another reconciler instance "
                                 f"({record.get('instance')!r}, this is {s.instance!r}); not touching it")
        claimed = not s.ours(record) or bool(record and (record.get("removed") or record.get("deactivated")))
        wanted = {"instance": s.instance, "user_id": user_id, "kind": kind,
                  "displayname": str(spec.get("displayname") or "")}
        previously_ours = s.ours(record)
        if claimed or record != wanted:
            s.put_record(lp, wanted)  # before registering: a crash in between still knows it is ours
        token, created = self._account(obj, user_id, password, previously_ours, record)
        wrote = created or claimed
        if action == "replace" and not created:
            s.call("POST", f"{CLIENT}/logout/all", f"log out every session of {user_id}", token=token)
            token, wrote = s.login(user_id, password, AGENT_DEVICE), True
        wrote = self._displayname(user_id, token, wanted["displayname"]) or wrote
        secrets: dict[str, str] = {}
        if kind == "agent":
            secrets = dict.fromkeys(obj.produces, token)
        else:  # a human's own session is theirs to open: ours ends here
            s.logout(token, user_id)
        outcome = Outcome.CREATED if created else Outcome.CONFIGURED if wrote else Outcome.UNCHANGED
        return ApplyResult(outcome, secrets, {"user_id": user_id})

    def _account(self, obj: ManagedObject, user_id: str, password: str, ours: bool,
                 record: Mapping[str, Any] | None) -> tuple[str, bool]:
        """A valid access token of the account, registering it when missing; (token, registered now)."""
        s = self.s
        lp = localpart(user_id)
        stored = s.stored(f"matrix/{lp}/token") if obj.produces else None
        if stored and s.whoami(stored) == user_id:
            return stored, False
        try:
            return self._register(user_id, password), True
        except MatrixError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
        if not ours:  # it existed before we claimed it: someone else's account
            s.put_record(lp, dict(record or {}) if record else {})
            raise PermanentError(f"{obj.key}: {user_id} already exists and was not registered by this reconciler "
                                 f"(instance {s.instance}); it is left alone — remove it, or declare the human "
                                 "with the gitops.hiclaw.io/matrix-user-id annotation to only invite it")
        try:
            return s.login(user_id, password, AGENT_DEVICE), False
        except MatrixError as exc:
            if exc.errcode not in ("M_FORBIDDEN", "M_USER_DEACTIVATED"):
                raise
            if not s.is_admin():
                raise PermanentError(
                    f"{obj.key}: {user_id} is ours but its password no longer works ({exc.errcode}) and the actor "
                    "is not a server admin, so it cannot be reset; reset it on the server to the value of "
                    f"`hiclaw-gitops secrets get matrix/{lp}/password`") from None
        s.call("PUT", f"{ADMIN}/v2/users/{q(user_id)}", f"reactivate {user_id} and reset its password (admin API)",
               body={"deactivated": False, "password": password, "logout_devices": False})
        return s.login(user_id, password, AGENT_DEVICE), False

    def _register(self, user_id: str, password: str) -> str:
        s = self.s
        lp = localpart(user_id)
        what = f"register {user_id}"
        if s.settings.registration == "shared_secret":
            secret = optional_secret(s.settings.registration_shared_secret_env,
                                     s.settings.registration_shared_secret_file,
                                     key="matrix.registration_shared_secret")
            if not secret:
                raise PermanentError(f"{what}: matrix.registration is shared_secret but no "
                                     "matrix.registration_shared_secret_env/_file is set")
            nonce = s.call("GET", f"{ADMIN}/v1/register", f"{what}: nonce").get("nonce")
            if not isinstance(nonce, str):
                raise UnexpectedAnswer(f"{what}: the registration nonce is {shape(nonce)}, not a string")
            mac = hmac.new(secret.encode(), f"{nonce}\0{lp}\0{password}\0notadmin".encode(), hashlib.sha1)
            answer = s.call("POST", f"{ADMIN}/v1/register", what, body={
                "nonce": nonce, "username": lp, "password": password, "admin": False, "mac": mac.hexdigest()})
        else:
            token = optional_secret(s.settings.registration_token_env, s.settings.registration_token_file,
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
                return self.s.call("POST", path, what, body={**body, "auth": auth} if auth else body)
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

    def _displayname(self, user_id: str, token: str, wanted: str) -> bool:
        what = f"display name of {user_id}"
        try:
            current = self.s.call("GET", f"{CLIENT}/profile/{q(user_id)}/displayname", f"read {what}")
        except MatrixError as exc:
            if exc.status != 404:
                raise
            current = {}
        if current.get("displayname") == wanted or not wanted:
            return False
        self.s.call("PUT", f"{CLIENT}/profile/{q(user_id)}/displayname", f"set {what}", token=token,
                    body={"displayname": wanted})
        return True

    # Delete ----------------------------------------------------------------------------------------

    def delete(self, obj: ManagedObject) -> Outcome:
        s = self.s
        lp = obj.name
        record = s.record(lp)
        if not s.ours(record) or record is None or record.get("removed") or record.get("deactivated"):
            return Outcome.UNCHANGED
        user_id = str(record.get("user_id") or f"@{lp}:{s.server}")
        password = s.stored(f"matrix/{lp}/password")
        token = s.stored(f"matrix/{lp}/token")
        if token and s.whoami(token) != user_id:
            token = None
        if token is None and password:
            try:
                token = s.login(user_id, password, JOIN_DEVICE)
            except MatrixError as exc:
                log.info("cannot log in as %s to remove it from its rooms: %s", user_id, exc)
        if token and record.get("kind") == "agent":
            joined = s.call("GET", f"{CLIENT}/joined_rooms", f"rooms of {user_id}", token=token)
            for room_id in joined.get("joined_rooms") or []:
                s.call("POST", f"{CLIENT}/rooms/{q(str(room_id))}/leave", f"{user_id} leaves {room_id}",
                       token=token, body={})
        deactivate = bool(s.settings.deactivate_removed)
        if token and deactivate and password:
            s.call("POST", f"{CLIENT}/account/deactivate", f"deactivate {user_id}", token=token, body={
                "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
                         "password": password}, "erase": False})
        elif token:
            s.call("POST", f"{CLIENT}/logout/all", f"log out every session of {user_id}", token=token)
        elif not deactivate and s.is_admin():
            self._end_sessions(user_id)
        if deactivate and not (token and password):
            # The client API asks for the password to deactivate; without it only a server admin can.
            if not s.is_admin():
                missing = "its password is not in the secret store" if token else "no working credentials"
                raise PermanentError(f"{obj.key}: cannot deactivate {user_id}: {missing} and the actor is not a "
                                     "server admin")
            s.call("POST", f"{ADMIN}/v1/deactivate/{q(user_id)}", f"deactivate {user_id} (admin API)",
                   body={"erase": False})
        s.put_record(lp, {**record, "deactivated" if deactivate else "removed": True})
        return Outcome.DELETED

    def _end_sessions(self, user_id: str) -> None:
        """Log out every session of `user_id` as a server admin (its own credentials are not at hand)."""
        s = self.s
        what = f"sessions of {user_id} (admin API)"
        answer = s.call("GET", f"{ADMIN}/v2/users/{q(user_id)}/devices", f"list the {what}")
        devices = answer.get("devices")
        if not isinstance(devices, list):
            raise UnexpectedAnswer(f"list the {what}: `devices` is {shape(devices)}, not a list")
        ids = [d["device_id"] for d in devices if isinstance(d, Mapping) and isinstance(d.get("device_id"), str)]
        if ids:
            s.call("POST", f"{ADMIN}/v2/users/{q(user_id)}/delete_devices", f"end the {what}", body={"devices": ids})
