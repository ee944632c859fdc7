"""The reconcile pass on the example org with in-memory providers: apply, no-op second pass, saved plans."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.memory import MemoryBackend
from gitops.apply.secrets import KEY_ENV, SecretStore
from gitops.apply.state import StateStore
from gitops.objects import Provider
from gitops.pipeline import apply_saved, reconcile
from gitops.plan.baseline import ACCESS_SNAPSHOT, LAST_COMMIT, ORG_SNAPSHOT
from gitops.plan.model import Action, Plan
from gitops.plan.saved import load_plan
from gitops.providers import registry
from gitops.providers.protocol import Backend
from gitops.providers.wiring import BackendsUnavailable, build_backends
from gitops.settings.model import MatrixSettings, RuntimeSettings, Settings
from gitops.source.files import DirectorySource

from .helpers import FAST

EXAMPLE = Path(__file__).resolve().parents[2] / "example-org"
SETTINGS = Settings().with_all_providers()


@dataclass
class Env:
    org: Path
    store: StateStore
    secrets: SecretStore
    memory: dict[str, MemoryBackend]

    @property
    def backends(self) -> dict[Provider, Backend]:
        return {Provider(p): b for p, b in self.memory.items()}

    def reconcile(self, **kw: object) -> object:
        return reconcile(DirectorySource(self.org), SETTINGS, store=self.store, secrets=self.secrets,
                         backends=self.backends, options=FAST, **kw)  # type: ignore[arg-type]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    org = tmp_path / "org"
    shutil.copytree(EXAMPLE, org)
    store, secrets = StateStore(tmp_path / "state"), SecretStore(tmp_path / "state")
    memory = {p.value: MemoryBackend(p) for p in Provider}
    yield Env(org, store, secrets, memory)
    store.close()
    secrets.close()


def _bump_model(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("model:"):
            indent = line[: len(line) - len(line.lstrip())]
            lines[i] = f"{indent}model: another-model"
            break
    return "\n".join(lines) + "\n"


def test_the_first_pass_applies_everything_and_the_second_changes_nothing(env: Env) -> None:
    first = env.reconcile()
    assert first.phase == "applied", first.to_dict()["run"]  # type: ignore[attr-defined]
    run = first.run  # type: ignore[attr-defined]
    desired_count = len(run.created)
    assert desired_count > 50 and not run.failed and run.verified
    assert set(env.store.inventory()) == {s.key for s in run.created}
    assert env.store.get_meta(LAST_COMMIT) == first.head  # type: ignore[attr-defined]
    assert env.store.get_meta(ORG_SNAPSHOT) and env.store.get_meta(ACCESS_SNAPSHOT)
    token = env.secrets.get("matrix/fe-dev/token")
    container = env.memory["runtime"].objects["runtime/container/hiclaw-worker-fe-dev"]
    assert container.resolved["env"]["HICLAW_WORKER_MATRIX_TOKEN"] == token

    for b in env.memory.values():
        b.reset_counters()
    second = env.reconcile()
    assert second.phase == "applied"  # type: ignore[attr-defined]
    assert not second.plan.has_changes  # type: ignore[attr-defined]
    for provider, b in env.memory.items():
        types = {k.split("/", 2)[1] for k in b.ours()}
        assert b.write_calls == 0, provider
        assert b.list_calls == len(types), provider  # SPEC §10: one list call per object type, nothing else


def test_an_invalid_org_touches_nothing(env: Env) -> None:
    (env.org / "workers" / "broken.yaml").write_text("apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata: {}\n")
    result = env.reconcile()
    assert result.phase == "invalid" and result.plan is None and result.run is None  # type: ignore[attr-defined]
    assert all(b.calls == [] for b in env.memory.values())


def test_a_dry_run_plans_without_writing(env: Env) -> None:
    result = env.reconcile(dry_run=True)
    assert result.phase == "planned" and result.plan.has_changes  # type: ignore[attr-defined]
    assert result.plan.compared_against == "live"  # type: ignore[attr-defined]
    assert all(b.write_calls == 0 for b in env.memory.values())
    assert env.store.inventory() == {}


def saved(env: Env, tmp: Path) -> Plan:
    preview = env.reconcile(dry_run=True)
    path = tmp / "plan.json"
    path.write_text(json.dumps(preview.plan.to_dict()))  # type: ignore[attr-defined]
    return load_plan(path)


def apply_file(env: Env, plan: Plan) -> object:
    return apply_saved(plan, DirectorySource(env.org), SETTINGS, store=env.store, secrets=env.secrets,
                       backends=env.backends, options=FAST)


def test_a_saved_plan_is_applied_exactly(env: Env, tmp_path: Path) -> None:
    plan = saved(env, tmp_path)
    result = apply_file(env, plan)
    assert result.phase == "applied", result.to_dict()  # type: ignore[attr-defined]
    assert len(result.run.created) == plan.count(Action.CREATE) == len(plan.changes)  # type: ignore[attr-defined]


def test_a_saved_plan_is_stale_when_the_head_moved(env: Env, tmp_path: Path) -> None:
    plan = saved(env, tmp_path)
    _edit_worker(env.org)
    result = apply_file(env, plan)
    assert result.phase == "error"  # type: ignore[attr-defined]
    assert result.error.startswith("the saved plan is stale: it was made for dir:")  # type: ignore[attr-defined]
    assert all(b.write_calls == 0 for b in env.memory.values())


def test_a_saved_plan_is_stale_when_live_state_moved(env: Env, tmp_path: Path) -> None:
    assert env.reconcile().phase == "applied"  # type: ignore[attr-defined]
    _edit_worker(env.org)
    plan = saved(env, tmp_path)
    assert plan.has_changes
    runtime = env.memory["runtime"]
    del runtime.objects[next(iter(runtime.ours()))]  # someone removed a container meanwhile
    result = apply_file(env, plan)
    assert result.phase == "error"  # type: ignore[attr-defined]
    assert "the live state changed since it was made" in result.error  # type: ignore[attr-defined]


def test_a_saved_plan_that_no_longer_compiles_to_its_changes_is_stale(env: Env, tmp_path: Path) -> None:
    plan = saved(env, tmp_path)
    data = plan.to_dict()
    data["changes"][0]["after"] = {"tampered": True}
    result = apply_file(env, Plan.from_dict(data))
    assert "no longer compiles to the planned spec" in result.error  # type: ignore[attr-defined]


def test_offline_plans_cannot_be_applied(env: Env, tmp_path: Path) -> None:
    data = saved(env, tmp_path).to_dict()
    data["compared_against"] = "commit"
    result = apply_file(env, Plan.from_dict(data))
    assert "only plans made against live or state can be applied" in result.error  # type: ignore[attr-defined]


def _edit_worker(org: Path) -> None:
    path = org / "workers"
    target = sorted(path.glob("*.yaml"))[0]
    target.write_text(_bump_model(target.read_text()))


def test_without_providers_the_pass_stops_at_the_plan_and_records_nothing(env: Env) -> None:
    result = reconcile(DirectorySource(env.org), Settings(), store=env.store, secrets=env.secrets, backends={})
    assert result.phase == "planned" and result.run is None and not result.plan.has_changes  # type: ignore[union-attr]
    assert result.plan.compared_against == "state"  # type: ignore[union-attr]
    assert env.store.get_meta(LAST_COMMIT) is None  # nothing was applied, so nothing is recorded as applied


def test_backends_are_built_from_settings_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    built = build_backends(Settings(runtime=RuntimeSettings(backend="memory", instance="blue")), None)
    assert list(built) == [Provider.RUNTIME]
    assert isinstance(built[Provider.RUNTIME], MemoryBackend) and built[Provider.RUNTIME].instance == "blue"  # type: ignore[attr-defined]
    monkeypatch.setitem(registry.BUILTIN, "matrix", "backends.not_written_yet:MatrixBackend")
    with pytest.raises(BackendsUnavailable, match="provider matrix is configured but its backend is not available"):
        build_backends(Settings(runtime=RuntimeSettings(backend="memory"), matrix=MatrixSettings()), None)
    with pytest.raises(BackendsUnavailable, match="provider runtime is configured but its backend is not available"):
        build_backends(Settings(runtime=RuntimeSettings(backend="nonesuch")), None)
