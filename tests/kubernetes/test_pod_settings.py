"""What the runtime settings add to every agent's pod on Kubernetes — resources, node selector, tolerations,
image pull secrets: applied with the Deployment, a change of them is drift that rolls every agent once, and a
pass after that writes nothing. Settings that never had them roll nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubeharness import KubeEnv

from backends.kubernetes import KubernetesBackend
from backends.kubernetes_objects import ANN_POD, POD_DRIFT
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.plan.model import Action
from gitops.providers.conformance import assert_ok, change_of, pending, plan_live, run_plan, seed_secrets
from gitops.providers.protocol import BackendContext
from gitops.settings.load import load_settings

POD: dict[str, Any] = {
    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    "node_selector": {"hiclaw.io/pool": "agents"},
    "tolerations": ({"key": "dedicated", "operator": "Equal", "value": "agents", "effect": "NoSchedule"},),
    "image_pull_secrets": ("regcred",),
}


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[StateStore, SecretStore]]:
    state, secrets = StateStore(tmp_path / "state"), SecretStore(tmp_path / "state", key="")
    yield state, secrets
    state.close()
    secrets.close()


def _backend(env: KubeEnv, **pod: Any) -> KubernetesBackend:
    return KubernetesBackend(BackendContext(settings=env.settings(**pod), instance=env.instance))


def _pass(env: KubeEnv, backend: KubernetesBackend, stores: tuple[StateStore, SecretStore], obj: Any) -> Any:
    state, secrets = stores
    seed_secrets(secrets, [obj], env.resolve)
    plan, creds, live = plan_live(backend, state, secrets, [obj])
    if pending(plan):
        assert_ok(run_plan(plan, creds, live, backend, state, secrets))
    return plan


def test_pod_settings_are_applied_changed_and_removed(kube_env: KubeEnv,
                                                      stores: tuple[StateStore, SecretStore]) -> None:
    obj = kube_env.desired("podded", state="Running")
    with_pod = _backend(kube_env, **POD)
    try:
        _pass(kube_env, with_pod, stores, obj)
        d = kube_env.deployment(obj)
        assert d is not None
        pod = d["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"] == POD["resources"]
        assert pod["nodeSelector"] == POD["node_selector"]
        assert pod["tolerations"] == list(POD["tolerations"])
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        writes = len(kube_env.cluster.writes()) if kube_env.cluster is not None else 0
        again = _pass(kube_env, with_pod, stores, obj)
        assert pending(again) == [], "pod settings unchanged, yet a change was planned"
        if kube_env.cluster is not None:
            assert len(kube_env.cluster.writes()) == writes
    finally:
        with_pod.close()
    bigger = _backend(kube_env, **{**POD, "resources": {"limits": {"memory": "2Gi"}}})
    try:
        plan = _pass(kube_env, bigger, stores, obj)
        change = change_of(plan, obj.key)
        assert change.action is Action.UPDATE and any(POD_DRIFT in str(d.path) for d in change.diff), change.diff
        d = kube_env.deployment(obj)
        assert d is not None and d["spec"]["template"]["spec"]["containers"][0]["resources"] == {
            "limits": {"memory": "2Gi"}}
        assert pending(_pass(kube_env, bigger, stores, obj)) == []
    finally:
        bigger.close()
    plain = _backend(kube_env)
    try:
        assert change_of(_pass(kube_env, plain, stores, obj), obj.key).action is Action.UPDATE
        d = kube_env.deployment(obj)
        assert d is not None
        pod = d["spec"]["template"]["spec"]
        assert not {"nodeSelector", "tolerations", "imagePullSecrets"} & set(pod)
        assert "resources" not in pod["containers"][0] and ANN_POD not in d["metadata"]["annotations"]
        assert pending(_pass(kube_env, plain, stores, obj)) == []
    finally:
        plain.close()


def test_pod_settings_are_checked_like_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("runtime:\n  backend: kubernetes\n  resources: {requests: {cpu: 250m}, limit: {memory: 1Gi}}\n"
                    "  tolerations: [{key: gpu, operator: Exists, effect: NoSchedul}]\n"
                    "  image_pull_secrets: [Regcred]\n")
    settings, diagnostics = load_settings(path, env={})
    assert settings is None
    assert [(d.code, d.line, d.hint) for d in diagnostics][:2] == [
        ("S301", 3, "did you mean `limits`?"), ("S304", 4, "did you mean `NoSchedule`?")]
    assert diagnostics[2].code == "S306" and diagnostics[2].line == 5
    path.write_text("runtime:\n  backend: kubernetes\n  node_selector: {pool: agents}\n"
                    "  image_pull_secrets: [regcred]\n")
    ok, _ = load_settings(path, env={"HICLAW_GITOPS_RUNTIME_TOLERATIONS": '[{"operator": "Exists"}]'})
    assert ok is not None and ok.runtime is not None
    assert (dict(ok.runtime.node_selector), list(ok.runtime.tolerations), list(ok.runtime.image_pull_secrets)) == (
        {"pool": "agents"}, [{"operator": "Exists"}], ["regcred"])
