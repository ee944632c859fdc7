"""Whole reconciles and agent lifecycles on the (fake) cluster: example-org becomes the expected objects and a
second pass writes nothing; Running → Sleeping → Running; a runtime switch; a rotated credential rolls the
Deployment. With KUBECONFIG set, the same on that cluster (`live`)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubeharness import KubeEnv

from backends.kubernetes_objects import ANN_CONFIG, ANN_CONSUMED
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.pipeline import ReconcileResult, reconcile
from gitops.plan.model import Action
from gitops.providers.conformance import assert_ok, change_of, pending, plan_live, run_plan, seed_secrets
from gitops.providers.protocol import Backend
from gitops.providers.wiring import build_backends, close_backends
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource

EXAMPLE_ORG = Path(__file__).resolve().parents[2] / "example-org"
AGENTS = {  # some of example-org's agents, named as SPEC §3.6 says
    "hiclaw-manager", "hiclaw-worker-docs-writer", "hiclaw-worker-support-bot", "hiclaw-worker-kb-curator",
    "hiclaw-worker-data-lead", "hiclaw-worker-fe-dev",
}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(tmp_path / "state")
    yield store
    store.close()


@pytest.fixture
def secret_store(tmp_path: Path) -> Iterator[SecretStore]:
    store = SecretStore(tmp_path / "state", key="")
    yield store
    store.close()


@pytest.fixture
def backend(kube_env: KubeEnv) -> Iterator[Backend]:
    b = kube_env.backend()
    yield b
    b.close()


def _converge(kube_env: KubeEnv, backend: Backend, state: StateStore, secrets: SecretStore, *objs: Any) -> None:
    seed_secrets(secrets, objs, kube_env.resolve)
    plan, creds, live = plan_live(backend, state, secrets, objs)
    assert_ok(run_plan(plan, creds, live, backend, state, secrets))
    again, _, _ = plan_live(backend, state, secrets, objs)
    assert pending(again) == []


def test_example_org_reconciles_and_a_second_pass_writes_nothing(kube_env: KubeEnv, tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path / "site"), runtime=kube_env.settings())
    store, secrets = StateStore(settings.state_dir), SecretStore(settings.state_dir)
    backends = build_backends(settings, secrets)
    try:
        def run() -> ReconcileResult:
            result = reconcile(DirectorySource(EXAMPLE_ORG), settings, store=store, secrets=secrets,
                               backends=backends)
            assert result.ok, (result.phase, result.error, result.run and result.run.failed)
            return result

        first = run()
        assert first.plan is not None and first.plan.counts()["create"] >= len(AGENTS)
        deployments = {d["metadata"]["name"]: d for d in kube_env.raw.list(
            "Deployment", kube_env.namespace, f"hiclaw.io/managed-by={kube_env.instance}")}
        containers = {c.key.rsplit("/", 1)[1] for c in first.plan.changes if c.key.startswith("runtime/container/")}
        assert containers >= AGENTS and set(deployments) == containers
        for name in containers:
            d = deployments[name]
            spec = d["spec"]
            assert spec["strategy"]["type"] == "Recreate" and spec["replicas"] in (0, 1)
            pod = spec["template"]["spec"]
            assert pod["serviceAccountName"] == name and pod["containers"][0]["image"]
            assert ANN_CONFIG in spec["template"]["metadata"]["annotations"]
            assert kube_env.raw.get("ServiceAccount", kube_env.namespace, name) is not None
            assert kube_env.raw.get("Service", kube_env.namespace, name) is not None
        if kube_env.cluster is not None:
            before = len(kube_env.cluster.writes())
            second = run()
            assert second.plan is not None and pending(second.plan) == []
            assert len(kube_env.cluster.writes()) == before, "a second pass wrote to the cluster"
            lists = [c for c in kube_env.cluster.calls[-20:] if c.verb == "list"]
            assert {c.resource for c in lists} == {"deployments", "services", "serviceaccounts", "secrets"}
    finally:
        close_backends(backends)
        store.close()
        secrets.close()


def test_running_sleeping_running(kube_env: KubeEnv, backend: Backend, state: StateStore,
                                  secret_store: SecretStore) -> None:
    for wanted, replicas in (("Running", 1), ("Sleeping", 0), ("Running", 1)):
        obj = kube_env.desired("sleepy", state=wanted)
        _converge(kube_env, backend, state, secret_store, obj)
        d = kube_env.deployment(obj)
        assert d is not None and d["spec"]["replicas"] == replicas
    stopped = kube_env.desired("sleepy", state="Stopped")
    _converge(kube_env, backend, state, secret_store, stopped)
    assert kube_env.deployment(stopped) is None
    for kind in ("ServiceAccount", "Secret", "Service"):
        assert kube_env.raw.get(kind, kube_env.namespace, stopped.name) is None, kind


def test_runtime_switch_replaces_the_deployment_and_keeps_the_rest(
    kube_env: KubeEnv, backend: Backend, state: StateStore, secret_store: SecretStore
) -> None:
    first = kube_env.desired("switch", runtime="openclaw", state="Running")
    _converge(kube_env, backend, state, secret_store, first)
    sa = kube_env.raw.get("ServiceAccount", kube_env.namespace, first.name)
    old = kube_env.deployment(first)
    switched = kube_env.replaced(first)
    seed_secrets(secret_store, [switched], kube_env.resolve)
    plan, creds, live = plan_live(backend, state, secret_store, [switched])
    assert change_of(plan, switched.key).action is Action.REPLACE
    assert_ok(run_plan(plan, creds, live, backend, state, secret_store))
    new = kube_env.deployment(switched)
    assert old is not None and new is not None
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == switched.spec["image"]
    kept = kube_env.raw.get("ServiceAccount", kube_env.namespace, first.name)
    assert sa is not None and kept is not None and kept["metadata"]["uid"] == sa["metadata"]["uid"]
    assert pending(plan_live(backend, state, secret_store, [switched])[0]) == []


def test_config_only_change_rolls_the_deployment(
    kube_env: KubeEnv, backend: Backend, state: StateStore, secret_store: SecretStore
) -> None:
    first = kube_env.desired("cfg", state="Running", config="cfg-1")
    _converge(kube_env, backend, state, secret_store, first)
    d1 = kube_env.deployment(first)
    second = kube_env.desired("cfg", state="Running", config="cfg-2")
    plan, creds, live = plan_live(backend, state, secret_store, [second])
    assert change_of(plan, second.key).action is Action.UPDATE
    assert_ok(run_plan(plan, creds, live, backend, state, secret_store))
    d2 = kube_env.deployment(second)
    assert d1 is not None and d2 is not None and d2["metadata"]["uid"] == d1["metadata"]["uid"]
    assert d2["spec"]["template"]["metadata"]["annotations"][ANN_CONFIG] == "cfg-2"
    assert d2["metadata"]["generation"] > d1["metadata"]["generation"]


def test_rotated_credential_rolls_the_deployment(
    kube_env: KubeEnv, backend: Backend, state: StateStore, secret_store: SecretStore
) -> None:
    obj = kube_env.desired("rotate", state="Running")
    _converge(kube_env, backend, state, secret_store, obj)
    token = f"agent/{'rotate'}/matrix-token"
    old_value = secret_store.peek(token)
    before = kube_env.deployment(obj)
    secret_store.put(token, "rotated-" + "x" * 20)  # issued again upstream
    plan, creds, live = plan_live(backend, state, secret_store, [obj])
    assert change_of(plan, obj.key).action is Action.UPDATE
    assert_ok(run_plan(plan, creds, live, backend, state, secret_store))
    after = kube_env.deployment(obj)
    assert before is not None and after is not None
    rolled = (after["spec"]["template"]["metadata"]["annotations"][ANN_CONSUMED]
              != before["spec"]["template"]["metadata"]["annotations"][ANN_CONSUMED])
    assert rolled, "the pod template did not change with the credential"
    secret = kube_env.raw.get("Secret", kube_env.namespace, obj.name)
    assert secret is not None
    value = base64.b64decode(secret["data"]["HICLAW_WORKER_MATRIX_TOKEN"]).decode()
    holds_new = value == secret_store.peek(token) and value != old_value
    assert holds_new, "the Secret does not hold the rotated credential"
    # The Deployment never carries a value: only a reference to the Secret.
    env = after["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "HICLAW_WORKER_MATRIX_TOKEN")
    assert "value" not in ref and ref["valueFrom"]["secretKeyRef"] == {"name": obj.name,
                                                                       "key": "HICLAW_WORKER_MATRIX_TOKEN"}
    assert pending(plan_live(backend, state, secret_store, [obj])[0]) == []


def test_someone_elses_label_and_scale_are_not_fought(
    kube_env: KubeEnv, backend: Backend, state: StateStore, secret_store: SecretStore
) -> None:
    """A label added with kubectl is not drift; an agent that is not enforced may scale itself to zero."""
    obj = kube_env.desired("shared", state="Running", enforce=False)
    _converge(kube_env, backend, state, secret_store, obj)
    d = kube_env.deployment(obj)
    assert d is not None
    d["metadata"]["labels"]["team.example/cost-centre"] = "42"
    d["spec"]["replicas"] = 0  # the Manager put the idle worker to sleep
    kube_env.raw.replace(d, kube_env.namespace)
    assert pending(plan_live(backend, state, secret_store, [obj])[0]) == []
