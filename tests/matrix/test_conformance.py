"""The shared backend conformance suite (protocol v2) on the Matrix backend, against this module's real Synapse.

The core suite runs on `matrix/user` (the owned type whose spec references a secret: the account's password);
`MultiTypeSuite` adds rooms; `WriteOnlySuite` runs on rooms (`preset` and `is_direct` only shape a room's
creation). Each test gets its own harness: a fresh instance label and a fresh localpart prefix, so the tests
share one homeserver without seeing each other's accounts and rooms (a Matrix user ID is never freed, so names
cannot be reused between tests). The backend's secret store is the suite's own (`tmp_path/state`), as in
production, where the executor stores the tokens the backend later reads.

Where Matrix differs from the suite's defaults, through the suite's documented hooks (never by skipping a
case):

- **No recorded hash** (`records_hash = False`): the backend keeps no hash with an account or a room. A room's
  membership and power levels change under it (people leave, are kicked, invited by others), and only the
  spec can say whether it still holds; so observations are compared by spec, as the executor's verify does.
  For the same reason `hashless_backend()` is the ordinary backend, and the write-only suite's "hash" case
  expects no hash either.
- **A user ID is never freed** (`retired(name)`): Synapse has no account deletion. Deleting an account means
  *retiring* it: with the default settings it is out of every room and has no session left (no device) but
  stays active; with `matrix.deactivate_removed: true` it is deactivated. The suite checks that, read back
  through the admin API, instead of "no object under the name". The core suite runs under both settings.
- **The foreign object** is an account registered on the server by someone else (shared-secret
  registration), which our records do not name.

`ProducerConsumerSuite` is not inherited — the Matrix backend serves no type that carries a token, its
consumers are other providers' objects (docs/matrix.md, "Conformance"); its producer half runs here as
`test_agent_token_is_an_output`.
"""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from mxsite import Inspector

from backends.matrix import MatrixBackend
from deploy.synapse import Synapse, SynapseError
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.plan.model import Action
from gitops.providers.conformance import (
    ConformanceSuite,
    MultiTypeSuite,
    RecordingResolver,
    WriteOnlySuite,
    applied,
    assert_ok,
    change_of,
    everything,
    leaked,
    observed,
    pending,
    plan_live,
    run_plan,
)
from gitops.providers.protocol import BackendContext
from gitops.settings.model import MatrixSettings


class MatrixHarness:
    """One test's view of the shared Synapse: its own instance label, localparts and secret store."""

    backend_class = MatrixBackend
    records_hash = False

    def __init__(self, hs: Synapse, inspector: Inspector, state_dir: Path, *, deactivate: bool) -> None:
        self.hs = hs
        self.inspector = inspector
        self.deactivate = deactivate
        tag = secrets.token_hex(3)
        self.instance = f"hiclaw-gitops-conf-{tag}"
        self.prefix = f"cf{tag}-"
        self.store = SecretStore(state_dir, key="")
        self.settings = MatrixSettings(**{**hs.settings(), "deactivate_removed": deactivate})
        self.planted: dict[str, str] = {}  # localpart -> password of the foreign account

    def close(self) -> None:
        self.store.close()

    # The core suite: agent accounts ---------------------------------------------------------------------

    def context(self) -> BackendContext:
        return BackendContext(settings=self.settings, secrets=self.store, instance=self.instance)

    def backend(self) -> MatrixBackend:
        return MatrixBackend(self.context())

    def localpart(self, name: str) -> str:
        return name if name.startswith(self.prefix) else self.prefix + name

    def user_id(self, name: str) -> str:
        return f"@{self.localpart(name)}:{self.hs.server_name}"

    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        lp = self.localpart(name)
        spec = {"user_id": self.user_id(lp), "displayname": f"{lp} r{revision}", "kind": "agent",
                "password": secret_ref(f"matrix/{lp}/password")}
        return ManagedObject(Provider.MATRIX, "user", lp, spec, f"Worker/{lp}", produces=(f"matrix/{lp}/token",))

    def replaced(self, obj: ManagedObject) -> ManagedObject:
        """The account changes hands (agent → human): every session logged out, the password login again."""
        return obj.with_spec({**obj.spec, "kind": "human" if obj.spec["kind"] == "agent" else "agent"})

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.store.resolve(spec)

    def count(self, name: str) -> int:
        """Matrix user IDs are unique: 1 when the server has an account under the name (active or not)."""
        return 0 if self.inspector.account(self.user_id(name)) is None else 1

    def retired(self, name: str) -> bool:
        """What is left of a deleted account: deactivated (`deactivate_removed`), or else active, in no room and
        with no session."""
        user_id = urllib.parse.quote(self.user_id(name))
        account = self.inspector.account(self.user_id(name))
        if account is None:
            return False
        if self.deactivate:
            return bool(account["deactivated"])
        rooms = self.inspector.get(f"/_synapse/admin/v1/users/{user_id}/joined_rooms")["joined_rooms"]
        devices = self.inspector.get(f"/_synapse/admin/v2/users/{user_id}/devices")["devices"]
        return not account["deactivated"] and rooms == [] and devices == []

    def plant_foreign(self, name: str) -> None:
        password = "fgn-" + secrets.token_hex(12)
        assert self.hs.register(self.localpart(name), password, admin=False)
        self.planted[self.localpart(name)] = password

    def foreign_intact(self, name: str) -> bool:
        lp = self.localpart(name)
        account = self.inspector.account(self.user_id(lp))
        if account is None or account["deactivated"]:
            return False
        try:  # its password still works: nobody reset it
            answer = self.hs.call("POST", "/_matrix/client/v3/login", {
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": lp},
                "password": self.planted[lp], "device_id": "TEST_FOREIGN"})
        except SynapseError:
            return False
        return bool(answer.get("access_token"))

    # Several types: rooms ---------------------------------------------------------------------------

    def sample(self, type_: str, name: str) -> ManagedObject:
        if type_ == "user":
            return self.desired(name)
        assert type_ == "room", type_
        return self.room(name)

    def room(self, name: str, revision: int = 0) -> ManagedObject:
        """A room of the actor alone (what any managed room holds besides its members)."""
        lp = self.localpart(name)
        actor = self.hs.actor
        spec = {"alias": f"#{lp}:{self.hs.server_name}", "name": f"Conformance: {lp}", "preset": "private_chat",
                "is_direct": bool(revision), "members": [actor], "power": {actor: 100}}
        return ManagedObject(Provider.MATRIX, "room", lp, spec, f"Worker/{lp}")

    # Write-only fields: a room's preset and direct flag -------------------------------------------------

    def with_write_only(self, name: str, revision: int = 0) -> ManagedObject:
        return self.room(name, revision)

    def hashless_backend(self) -> MatrixBackend:
        return self.backend()  # the Matrix backend never keeps a hash


@pytest.fixture(scope="module")
def inspector(homeserver: Synapse) -> Inspector:
    return Inspector(homeserver)


def harness_for(hs: Synapse, inspector: Inspector, tmp_path: Path, deactivate: bool) -> Iterator[MatrixHarness]:
    harness = MatrixHarness(hs, inspector, tmp_path / "state", deactivate=deactivate)
    try:
        yield harness
    finally:
        harness.close()


class TestMatrixConformance(ConformanceSuite, MultiTypeSuite, WriteOnlySuite):
    """Default settings: a deleted account is retired (out of its rooms, no session), not deactivated."""

    @pytest.fixture
    def harness(self, homeserver: Synapse, inspector: Inspector, tmp_path: Path) -> Iterator[MatrixHarness]:
        yield from harness_for(homeserver, inspector, tmp_path, deactivate=False)


    def test_agent_token_is_an_output(
        self, harness: MatrixHarness, backend: MatrixBackend, resolver: RecordingResolver, state: StateStore,
        secret_store: SecretStore,
    ) -> None:
        """The producer half of `ProducerConsumerSuite`, whose consumers (an agent's container and files) belong
        to other providers: every apply of an agent returns its token and it is never observed; a token lost
        from the store is planned for re-issue, issued again by the executor, and the next plan is empty."""
        agent = harness.desired("conf-token")
        first = applied(backend, agent, "create", None, resolver)
        second = applied(backend, agent, "update", observed(backend, agent), resolver)
        assert set(first.secrets) == set(second.secrets) == set(agent.produces)
        outputs = [*first.secrets.values(), *second.secrets.values()]
        leaks = len(leaked(outputs, everything(backend), first.ids, second.ids, repr(first), repr(second)))
        assert leaks == 0, "a token shows in an observation, the ids or the result's repr"

        issuer = harness.desired("conf-issuer")
        token = issuer.produces[0]
        plan1, creds, live = plan_live(backend, state, secret_store, [issuer])
        run1 = run_plan(plan1, creds, live, backend, state, secret_store)
        assert_ok(run1)
        old = secret_store.peek(token)
        assert old, f"the executor did not store the output {token}"
        secret_store.delete(token)
        plan2, creds, live = plan_live(backend, state, secret_store, [issuer])
        reissue = change_of(plan2, issuer.key)
        assert reissue.action is Action.UPDATE and "missing" in reissue.reason and token in reissue.reason
        run2 = run_plan(plan2, creds, live, backend, state, secret_store)
        assert_ok(run2)
        new = secret_store.peek(token)
        reissued = bool(new) and new != old
        assert reissued, "the output was not issued again"
        plan3, _, _ = plan_live(backend, state, secret_store, [issuer])
        assert pending(plan3) == []
        leaks = len(leaked([old, new or ""], plan1.to_dict(), plan2.to_dict(), plan3.to_dict(), run1.to_dict(),
                           run2.to_dict(), everything(backend)))
        assert leaks == 0, "a token shows in a plan, a run or an observation"


class TestMatrixConformanceDeactivating(ConformanceSuite):
    """`matrix.deactivate_removed: true`: a deleted account is deactivated."""

    @pytest.fixture
    def harness(self, homeserver: Synapse, inspector: Inspector, tmp_path: Path) -> Iterator[MatrixHarness]:
        yield from harness_for(homeserver, inspector, tmp_path, deactivate=True)

