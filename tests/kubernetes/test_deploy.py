"""The deployable package: the kustomize manifests render, the Deployment is what an operator needs (non-root,
probes, metrics annotations, the state on a PVC, settings from a ConfigMap, secrets from a Secret), and the
Role allows every call the backend and the leader election make — and nothing more — as the fake recorded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakeapi import RESOURCES, FakeApiServer
from kubeharness import KubeEnv

from backends.kubernetes_api import KubeApi
from backends.kubernetes_lease import KubeLeaseStore
from gitops.daemon.leader import LeaderElector, Timing
from gitops.providers.conformance import secret_resolver, type_scope
from gitops.settings.load import load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"


def render() -> list[dict[str, Any]]:
    """`kubectl kustomize` when kubectl is here; else the same for this simple kustomization (namespace and
    labels added to each resource)."""
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((MANIFESTS / name).read_text()):
            if doc:
                doc["metadata"]["namespace"] = kustomization["namespace"]
                docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in render()}


def test_manifests_render_into_one_namespace(rendered: dict[str, dict[str, Any]]) -> None:
    assert set(rendered) == {
        "ServiceAccount/hiclaw-gitops", "Role/hiclaw-gitops", "RoleBinding/hiclaw-gitops",
        "ConfigMap/hiclaw-gitops-settings", "PersistentVolumeClaim/hiclaw-gitops-state",
        "Deployment/hiclaw-gitops", "Service/hiclaw-gitops",
    }
    assert {d["metadata"]["namespace"] for d in rendered.values()} == {"hiclaw"}
    assert not any(d["kind"] == "Secret" for d in rendered.values()), "a Secret (and its values) in git"


def test_deployment_is_what_an_operator_needs(rendered: dict[str, dict[str, Any]]) -> None:
    deployment = rendered["Deployment/hiclaw-gitops"]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "hiclaw-gitops-state"
    assert volumes["settings"]["configMap"]["name"] == "hiclaw-gitops-settings"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["HICLAW_GITOPS_SETTINGS"]["value"] == f"{mounts['settings']}/settings.yaml"
    assert env["HICLAW_GITOPS_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "hiclaw-gitops-secrets"
    assert {"POD_NAME", "POD_NAMESPACE"} <= set(env)
    assert spec["serviceAccountName"] == "hiclaw-gitops"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # a ReadWriteOnce volume, locked by the daemon


def test_the_settings_in_the_configmap_are_valid(rendered: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    deployment = rendered["Deployment/hiclaw-gitops"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    text = rendered["ConfigMap/hiclaw-gitops-settings"]["data"]["settings.yaml"]
    (tmp_path / "settings.yaml").write_text(text)
    settings, diagnostics = load_settings(tmp_path / "settings.yaml", env={})
    assert settings is not None, [str(d) for d in diagnostics]
    assert settings.runtime is not None and settings.runtime.backend == "kubernetes"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert settings.state_dir.startswith(mounts["state"])
    assert settings.status.listen.endswith(":9180") and not settings.status.listen.startswith("127.")
    secret_envs = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {settings.source.token_env, settings.source.webhook_secret_env} <= secret_envs


def test_dockerfile_runs_the_daemon_as_non_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["hiclaw-gitops", "run"]' in text


# RBAC against the calls made ---------------------------------------------------------------------------


def _exercise(env: KubeEnv) -> None:
    """Everything the backend and the election do: observe, create, update, sleep, runtime switch (replace),
    a spec without ports or credentials, Stopped, delete; acquire, renew and release the lease."""
    backend = env.backend()
    resolve = secret_resolver()
    try:
        backend.observe(type_scope(backend.types))
        obj = env.desired("rbac", state="Running")
        backend.apply(obj, "create", None, resolve)
        backend.apply(env.desired("rbac", state="Sleeping"), "update", None, resolve)
        switched = env.replaced(obj)
        backend.apply(switched, "replace", None, resolve)
        bare = env.desired("rbac", state="Running", runtime=switched.spec["runtime"])
        bare = bare.__class__(bare.provider, bare.type, bare.name,
                              {**bare.spec, "ports": [], "env": {"HOME": "/root"}}, bare.owner)
        backend.apply(bare, "update", None, resolve)
        backend.apply(env.desired("rbac", state="Stopped"), "update", None, resolve)
        backend.apply(obj, "create", None, resolve)
        backend.delete(obj)
    finally:
        backend.close()
    elector = LeaderElector(KubeLeaseStore("hiclaw-gitops", env.namespace, KubeApi()), "pod-0",
                            Timing(1.0, 0.6, 0.1))
    assert elector.try_acquire_or_renew() and elector.try_acquire_or_renew()
    elector.stop(release=True)


def test_role_allows_every_call_made_and_nothing_more(
    fake_server: FakeApiServer, rendered: dict[str, dict[str, Any]]
) -> None:
    recorded = fake_server
    env = KubeEnv("hiclaw", recorded.cluster)
    _exercise(env)
    made = {(c.group, c.resource, c.verb) for c in recorded.cluster.calls}
    allowed = {(group, resource, verb) for rule in rendered["Role/hiclaw-gitops"]["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    assert made <= allowed, f"calls the Role does not allow: {sorted(made - allowed)}"
    assert allowed <= made, f"the Role allows calls never made: {sorted(allowed - made)}"
    assert {r for _, r, _ in made} <= set(RESOURCES)
