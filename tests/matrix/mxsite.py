"""Test support for the Matrix tests: an org site reconciled onto the session's real Synapse, and an independent
inspector that reads rooms back with the admin API as the Global Admin (never through the backend's code)."""

from __future__ import annotations

import json
import secrets
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.matrix import MatrixBackend
from deploy.synapse import Synapse
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import Provider
from gitops.pipeline import ReconcileResult, reconcile
from gitops.providers.protocol import BackendContext
from gitops.settings.model import MatrixSettings, Settings
from gitops.source.files import DirectorySource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ORG = ROOT / "example-org"
ADMIN_PASSWORD = "adm-" + secrets.token_hex(12)  # generated per session: must never show in any output


@dataclass(frozen=True)
class Room:
    """One room as the server holds it: who is in it and how, and who holds power 100."""

    room_id: str
    members: Mapping[str, str]  # user -> membership
    power: frozenset[str]  # power 100: m.room.power_levels users at 100, and the creators on room version 12
    creator: str
    name: str


class Inspector:
    """Reads the server as the Global Admin through Synapse's admin API: independent of the backend."""

    def __init__(self, hs: Synapse) -> None:
        self.hs = hs
        answer = hs.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": hs.admin_user},
            "password": ADMIN_PASSWORD, "device_id": "TEST_INSPECTOR"})
        self.token = str(answer["access_token"])

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.hs.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())

    def rooms(self, prefix: str = "#hiclaw-") -> dict[str, list[Room]]:
        """Alias localpart -> every room whose canonical alias it is (a duplicate shows as two)."""
        listed = self.get("/_synapse/admin/v1/rooms?limit=10000")["rooms"]
        out: dict[str, list[Room]] = {}
        for entry in listed:
            alias = entry.get("canonical_alias") or ""
            if not alias.startswith(prefix):
                continue
            out.setdefault(alias[1:].split(":", 1)[0], []).append(self.room(entry["room_id"]))
        return out

    def room(self, room_id: str) -> Room:
        state = self.get(f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room_id)}/state")["state"]
        members: dict[str, str] = {}
        users: dict[str, int] = {}
        creator, version, name = "", "1", ""
        for event in state:
            kind, content = event["type"], event.get("content") or {}
            if kind == "m.room.member":
                members[event["state_key"]] = content.get("membership", "")
            elif kind == "m.room.power_levels":
                users = dict(content.get("users") or {})
            elif kind == "m.room.create":
                creator, version = event["sender"], str(content.get("room_version", "1"))
            elif kind == "m.room.name":
                name = content.get("name", "")
        power = {u for u, level in users.items() if level == 100}
        if version == "12":
            assert creator not in users, f"{room_id}: the creator is listed in power_levels.users (room v12)"
            power.add(creator)
        return Room(room_id, members, frozenset(power), creator, name)

    def topology(self, domain: str) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
        """Alias localpart -> (members present by localpart: joined or invited, power-100 localparts)."""
        out = {}
        for lp, rooms in self.rooms().items():
            assert len(rooms) == 1, f"{lp}: {len(rooms)} rooms carry this alias"
            room = rooms[0]
            present = {u for u, m in room.members.items() if m in ("join", "invite")}
            out[lp] = (frozenset(short(u, domain) for u in present), frozenset(short(u, domain) for u in room.power))
        return out

    def account(self, user_id: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = self.get(f"/_synapse/admin/v2/users/{urllib.parse.quote(user_id)}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return answer


def short(user_id: str, domain: str) -> str:
    return user_id[1:].removesuffix(f":{domain}") if user_id.endswith(f":{domain}") else user_id


class Site:
    """A copy of an org, a state directory and a Matrix backend on the session's homeserver."""

    def __init__(self, hs: Synapse, root: Path, org: Path = EXAMPLE_ORG, *, http: Any = None,
                 **matrix: Any) -> None:
        self.hs = hs
        self.org = root / "org"
        shutil.copytree(org, self.org)
        self.settings = Settings(state_dir=str(root / "state"),
                                 matrix=MatrixSettings(**{**hs.settings(), **matrix}))
        self.store = StateStore(self.settings.state_dir)
        self.secrets = SecretStore(self.settings.state_dir, key="")
        self.http = http
        self.backend = self.new_backend()

    def new_backend(self) -> MatrixBackend:
        assert self.settings.matrix is not None
        ctx = BackendContext(settings=self.settings.matrix, secrets=self.secrets, http=self.http)
        return MatrixBackend(ctx)

    def reconcile(self, *, check: bool = True) -> ReconcileResult:
        result = reconcile(DirectorySource(self.org), self.settings, store=self.store, secrets=self.secrets,
                           backends={Provider.MATRIX: self.backend})
        if check:
            failed = result.run.failed if result.run else ()
            assert result.ok, (result.phase, result.error, [(s.key, s.message) for s in failed])
        return result

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.org / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{relative}: {old!r} not found"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def secret_values(self) -> list[str]:
        return [v for n in self.secrets.names() if (v := self.secrets.peek(n))]

    def close(self) -> None:
        self.backend.close()
        self.secrets.close()
        self.store.close()


def counts(result: ReconcileResult) -> dict[str, int]:
    assert result.plan is not None
    return {k: v for k, v in result.plan.counts().items() if v}
