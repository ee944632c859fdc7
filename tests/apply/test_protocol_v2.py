"""The provider protocol's promises, end to end through the pipeline and the executor: outputs and the
credentials they carry, traits read from backends, scoped observation, dependency drops before deletes, prune
disabled in settings, a type no backend serves, and no backend module imported by the core."""

from __future__ import annotations

import ast
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backends.memory import MemoryBackend
from gitops.apply.executor import execute
from gitops.apply.result import Status
from gitops.apply.secrets import KEY_ENV, SecretStore
from gitops.apply.state import StateStore
from gitops.objects import ManagedObject, Provider
from gitops.pipeline import ReconcileResult, reconcile
from gitops.plan.model import CREDENTIALS_CHANGED, Action
from gitops.providers.protocol import ApplyResult, Observed, Outcome, Resolve, TypeTraits
from gitops.settings.model import PruneSettings, RuntimeSettings, Settings
from gitops.source.files import DirectorySource

from .helpers import FAST, backends, converge, obj, plan_live, table

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example-org"
SETTINGS = Settings().with_all_providers()
TOKEN = "matrix/fe-dev/token"
CONTAINER = "runtime/container/hiclaw-worker-fe-dev"
CONFIG = "storage/object/agents/fe-dev/openclaw.json"


class Org:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "org"
        shutil.copytree(EXAMPLE, self.root)
        self.store = StateStore(tmp / "state")
        self.secrets = SecretStore(tmp / "state")
        self.memory = {p: MemoryBackend(p) for p in Provider}

    def reconcile(self, settings: Settings = SETTINGS, **kw: Any) -> ReconcileResult:
        return reconcile(DirectorySource(self.root), settings, store=self.store, secrets=self.secrets,
                         backends=dict(self.memory), options=FAST, **kw)

    def close(self) -> None:
        self.store.close()
        self.secrets.close()


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    o = Org(tmp_path)
    yield o
    o.close()


# Outputs -------------------------------------------------------------------------------------------------


def test_a_lost_token_is_issued_again_and_everything_that_carries_it_follows(org: Org) -> None:
    assert org.reconcile().phase == "applied"
    old = org.secrets.get(TOKEN)
    runtime, storage = org.memory[Provider.RUNTIME], org.memory[Provider.STORAGE]
    assert runtime.objects[CONTAINER].resolved["env"]["HICLAW_WORKER_MATRIX_TOKEN"] == old

    org.secrets.delete(TOKEN)  # lost: a restored backup, a wiped store
    result = org.reconcile()
    assert result.phase == "applied", result.to_dict()["run"]
    changes = {c.key: c for c in result.plan.changes} if result.plan else {}
    account = changes["matrix/user/fe-dev"]
    assert account.action is Action.UPDATE and TOKEN in account.reason and "missing" in account.reason
    carriers = {k for k, c in changes.items() if c.reason == CREDENTIALS_CHANGED}
    assert {CONTAINER, CONFIG} <= carriers
    new = org.secrets.get(TOKEN)
    assert new != old
    assert runtime.objects[CONTAINER].resolved["env"]["HICLAW_WORKER_MATRIX_TOKEN"] == new
    assert new in json.dumps(storage.objects[CONFIG].resolved)
    assert old not in json.dumps(result.to_dict()) and new not in json.dumps(result.to_dict())

    again = org.reconcile()
    assert again.plan is not None and not again.plan.has_changes, again.plan.to_dict() if again.plan else None


def test_a_re_issued_credential_restarts_its_carriers_without_showing_the_value(org: Org) -> None:
    assert org.reconcile().phase == "applied"
    org.secrets.put(TOKEN, "syt_rotated_by_an_operator_0123456789")
    plan = org.reconcile(dry_run=True).plan
    assert plan is not None
    changed = {c.key for c in plan.changes if c.action is not Action.NOOP}
    assert {CONTAINER, CONFIG} <= changed and "matrix/user/fe-dev" not in changed
    assert "syt_rotated_by_an_operator_0123456789" not in json.dumps(plan.to_dict())


def test_an_output_nobody_declared_is_refused(tmp_path: Path) -> None:
    class Chatty(MemoryBackend):
        def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
            result = super().apply(obj, action, before, resolve)
            return replace(result, secrets={"matrix/someone-else/token": "x" * 20})

    store, secrets = StateStore(tmp_path), SecretStore(tmp_path)
    user = obj("matrix/user/a")
    _, result = converge(table(user), backends(matrix=Chatty("matrix")), store, secrets)
    step = result.step(user.key)
    assert step is not None and step.status is Status.FAILED and "undeclared output" in step.message
    assert "matrix/someone-else/token" not in secrets.names()
    store.close()
    secrets.close()


def test_outputs_ids_and_fingerprint_are_kept_in_the_inventory(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    user = obj("matrix/user/a")
    _, result = converge(table(user), backends(matrix=MemoryBackend("matrix")), store)
    assert result.ok
    outputs = store.outputs()[user.key]
    assert outputs["ids"]["id"].startswith("matrix-") and outputs["fingerprint"] == "1"
    store.close()


# Traits --------------------------------------------------------------------------------------------------


def test_what_forces_a_replace_is_the_backends_declaration(tmp_path: Path) -> None:
    """The same env change: a replace where the backend says env is baked in (Docker), an update where it is
    not (a Deployment rolls in place)."""
    before = obj("runtime/container/a", {"image": "i", "env": {"A": "1"}})
    after = obj("runtime/container/a", {"image": "i", "env": {"A": "2"}})
    for traits, expected in ((None, Action.REPLACE), ({"container": TypeTraits(replace_on=frozenset({"image"}))},
                                                      Action.UPDATE)):
        store = StateStore(tmp_path / expected.value)
        runtime = MemoryBackend("runtime", traits=traits)
        converge(table(before), backends(runtime=runtime), store)
        plan, _ = plan_live(table(after), backends(runtime=runtime), store)
        assert [c.action for c in plan.changes] == [expected]
        store.close()


def test_write_only_fields_are_never_compared(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    room = MemoryBackend("matrix", ("room",), traits={"room": TypeTraits(write_only=frozenset({"preset"}))},
                         record_hash=False)
    desired = table(obj("matrix/room/r", {"alias": "#r:d", "preset": "private_chat"}))
    _, first = converge(desired, backends(matrix=room), store)
    assert first.ok and first.verified
    assert "preset" not in room.observe(room_scope())["matrix/room/r"].spec
    again, _ = plan_live(desired, backends(matrix=room), store)
    assert not again.has_changes
    store.close()


def room_scope() -> Any:
    from gitops.providers.protocol import Scope

    return Scope({"room": frozenset({"r"})})


# Observation -----------------------------------------------------------------------------------------------


def test_verify_observes_only_what_the_run_touched(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    matrix = MemoryBackend("matrix", ("user", "room"))
    users = [obj(f"matrix/user/u{i}") for i in range(3)]
    converge(table(*users, obj("matrix/room/r")), backends(matrix=matrix), store)
    matrix.reset_counters()
    changed = obj("matrix/user/u1", {"v": 2})
    _, result = converge(table(users[0], changed, users[2], obj("matrix/room/r")), backends(matrix=matrix), store)
    assert result.ok and result.verified
    # One list per type for the plan, then verify lists the one type touched (not the room type again).
    assert [c for c in matrix.calls if c[0] == "list"] == [("list", "user"), ("list", "room"), ("list", "user")]
    store.close()


# Executor -------------------------------------------------------------------------------------------------


def test_an_update_that_drops_a_dependency_runs_before_that_dependencys_delete(tmp_path: Path) -> None:
    """A route that stops naming a consumer is updated before the consumer is deleted (Higress refuses to delete a
    consumer a route still references; Kubernetes a Secret still mounted)."""
    log: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Ordered(MemoryBackend):
        def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
            with lock:
                log.append(("apply", obj.key))
            return super().apply(obj, action, before, resolve)

        def delete(self, obj: ManagedObject) -> Outcome:
            with lock:
                log.append(("delete", obj.key))
            return super().delete(obj)

    store = StateStore(tmp_path)
    gateway = Ordered("gateway", latency=0.02)
    consumer = obj("gateway/consumer/worker-a")
    route = obj("gateway/route/default", {"allow": ["worker-a"]}, deps=[consumer.key])
    converge(table(consumer, route), backends(gateway=gateway), store)
    log.clear()
    _, result = converge(table(obj("gateway/route/default", {"allow": []})), backends(gateway=gateway), store)
    assert result.ok, result.to_dict()
    assert log == [("apply", route.key), ("delete", consumer.key)]
    store.close()


def test_prune_disabled_in_settings_deletes_nothing_and_says_what_it_keeps(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    runtime = MemoryBackend("runtime")
    kept = [obj(f"runtime/container/c{i}") for i in range(8)]
    converge(table(*kept), backends(runtime=runtime), store)
    plan, live = plan_live({}, backends(runtime=runtime), store, prune=PruneSettings(enabled=False))
    assert {c.action for c in plan.changes} == {Action.NOOP}
    assert all("prune.enabled: false" in c.reason for c in plan.changes)
    assert any("8 object(s) no longer declared are kept" in w for w in plan.warnings)
    assert not plan.guard["tripped"]  # nothing is deleted, so no mass deletion either
    result = execute(plan, {}, backends(runtime=runtime), store, None, FAST, observed=live.observed,
                     current=live.baseline.objects)
    assert result.ok and set(runtime.ours()) == {o.key for o in kept}


def test_prune_disabled_in_settings_through_the_pipeline(org: Org) -> None:
    assert org.reconcile().phase == "applied"
    (org.root / "workers" / "release-manager.yaml").unlink()
    settings = replace(SETTINGS, prune=PruneSettings(enabled=False))
    result = org.reconcile(settings)
    assert result.phase == "applied" and result.run is not None and not result.run.deleted
    assert "runtime/container/hiclaw-worker-release-manager" in org.memory[Provider.RUNTIME].ours()


def test_a_type_no_configured_backend_serves_is_refused_before_anything_is_touched(org: Org) -> None:
    org.memory[Provider.MATRIX] = MemoryBackend("matrix", ("user",))  # serves no rooms
    result = org.reconcile()
    assert result.phase == "error" and "matrix/room" in result.error and "serves only user" in result.error
    assert all(b.calls == [] for b in org.memory.values())


# Layout ---------------------------------------------------------------------------------------------------


def test_the_core_imports_no_backend_module() -> None:
    offenders = []
    for path in sorted((ROOT / "gitops").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "backends" or
                          n.startswith("backends.")]
    assert offenders == []


def test_the_docker_backend_declares_its_traits_without_connecting() -> None:
    from gitops.providers import registry

    cls = registry.get_class("docker")
    traits = cls.traits["container"]
    assert "image" in traits.replace_on and traits.absent_by_design({"state": "Stopped"})
    assert cls(RuntimeSettings(docker_url="unix:///nonexistent.sock")) is not None  # type: ignore[arg-type]
