"""The deployable package, in both variants: the kustomize manifests render (one replica on a claim; two replicas
with leader election, the Kubernetes secret store and state replication on per-pod emptyDirs), the Deployment is
what an operator needs (non-root, probes, metrics annotations, settings from a ConfigMap, secrets from a
Secret), and the Role allows every call the backend, the secret store, state replication and the leader
election make — and nothing more — as the fake recorded."""

from __future__ import annotations

import hashlib
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
from backends.kubernetes_secrets import KubeSecretStore
from backends.kubernetes_state import KubeStateSnapshots
from gitops.daemon.leader import LeaderElector, Timing, elector_from_settings
from gitops.daemon.replica import StateReplica, replica_from_settings
from gitops.providers.conformance import secret_resolver, type_scope
from gitops.settings.load import load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
HA = MANIFESTS / "ha"


def render(root: Path = MANIFESTS) -> list[dict[str, Any]]:
    """`kubectl kustomize` when kubectl is here; else `build` below."""
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    return build(root)


def build(root: Path) -> list[dict[str, Any]]:
    """What kustomize does with these kustomizations, no more: resources (files and directories), strategic
    merge patches of mappings, JSON 6902 patches of a target, the namespace, the labels and the image tag."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization.get("resources", []):
        path = root / name
        if path.is_dir():
            docs.extend(build(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in kustomization.get("patches", []):
        body = yaml.safe_load((root / patch["path"]).read_text())
        if "target" in patch:
            target = patch["target"]
            for doc in docs:
                if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]:
                    for op in body:
                        _json_patch(doc, op)
        else:
            doc = next(d for d in docs if (d["kind"], d["metadata"]["name"]) == (body["kind"],
                                                                                   body["metadata"]["name"]))
            _merge(doc, body)
    for doc in docs:
        if "namespace" in kustomization:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for pairs in kustomization.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(pairs["pairs"])
        for image in kustomization.get("images", []):
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if container["image"] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _json_patch(doc: Any, op: dict[str, Any]) -> None:
    *parents, last = [p for p in op["path"].split("/") if p]
    node = doc
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    assert op["op"] in ("add", "replace", "test"), op
    if op["op"] == "test":  # the patch's own check that it edits what it means to
        found = node[int(last)] if isinstance(node, list) else node.get(last)
        assert found == op["value"], f"test of {op['path']}: {found!r} is not {op['value']!r}"
        return
    if isinstance(node, list):
        node[int(last)] = op["value"]
    else:
        assert op["op"] == "add" or last in node, f"replace of a missing {op['path']}"
        node[last] = op["value"]


def _merge(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            _merge(doc[key], value)
        else:
            doc[key] = value


def by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    return by_name(render())


@pytest.fixture(scope="module")
def rendered_ha() -> dict[str, dict[str, Any]]:
    return by_name(render(HA))


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
    # The Kubernetes secret store (secret_store.backend: kubernetes): list, apply, delete.
    store = KubeSecretStore(env.namespace, env.instance)
    store.get_or_create("gateway/rbac/key")
    store.delete("gateway/rbac/key")
    store.close()
    # State replication: list, apply each chunk, delete an older generation's.
    snapshots = KubeStateSnapshots(env.namespace, env.instance, chunk=64)
    snapshots.load()
    for generation in (1, 2):
        blob = bytes(range(200))
        snapshots.save(generation, blob, hashlib.sha256(blob).hexdigest(), guard=lambda: True)
    snapshots.load()
    snapshots.close()


@pytest.mark.parametrize("variant", ["single", "ha"])
def test_role_allows_every_call_made_and_nothing_more(
    fake_server: FakeApiServer, rendered: dict[str, dict[str, Any]], rendered_ha: dict[str, dict[str, Any]],
    variant: str,
) -> None:
    recorded = fake_server
    env = KubeEnv("hiclaw", recorded.cluster)
    _exercise(env)
    made = {(c.group, c.resource, c.verb) for c in recorded.cluster.calls}
    manifests = rendered if variant == "single" else rendered_ha
    allowed = {(group, resource, verb) for rule in manifests["Role/hiclaw-gitops"]["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    assert made <= allowed, f"calls the Role does not allow: {sorted(made - allowed)}"
    assert allowed <= made, f"the Role allows calls never made: {sorted(allowed - made)}"
    assert {r for _, r, _ in made} <= set(RESOURCES)
    binding = manifests["RoleBinding/hiclaw-gitops"]
    assert binding["subjects"][0]["name"] == manifests["Deployment/hiclaw-gitops"]["spec"]["template"]["spec"][
        "serviceAccountName"]


# The HA variant ----------------------------------------------------------------------------------------


def test_ha_variant_runs_two_replicas_that_share_state_through_the_cluster(
    rendered_ha: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    assert set(rendered_ha) == {
        "ServiceAccount/hiclaw-gitops", "Role/hiclaw-gitops", "RoleBinding/hiclaw-gitops",
        "ConfigMap/hiclaw-gitops-settings", "Deployment/hiclaw-gitops", "Service/hiclaw-gitops",
        "PodDisruptionBudget/hiclaw-gitops",
    }, "the HA variant has no claim: each replica's state directory is its own emptyDir"
    assert {d["metadata"]["namespace"] for d in rendered_ha.values()} == {"hiclaw"}
    deployment = rendered_ha["Deployment/hiclaw-gitops"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["state"] and "persistentVolumeClaim" not in volumes["state"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"  # a standby is ready too (rollouts)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["affinity"]["podAntiAffinity"]
    assert rendered_ha["PodDisruptionBudget/hiclaw-gitops"]["spec"]["minAvailable"] == 1
    # Its settings turn on exactly what several replicas need, and the daemon accepts them.
    (tmp_path / "settings.yaml").write_text(rendered_ha["ConfigMap/hiclaw-gitops-settings"]["data"]["settings.yaml"])
    settings, diagnostics = load_settings(tmp_path / "settings.yaml", env={})
    assert settings is not None, [str(d) for d in diagnostics]
    assert settings.leader_election.enabled and settings.leader_election.replicate_state
    assert settings.secret_store.backend == "kubernetes"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert settings.state_dir.startswith(mounts["state"])
    env = {e["name"] for e in container["env"]}
    assert {"POD_NAME", "POD_NAMESPACE"} <= env
    elector = elector_from_settings(settings, {"POD_NAME": "hiclaw-gitops-abc", "POD_NAMESPACE": "hiclaw"})
    assert elector is not None and elector.identity == "hiclaw-gitops-abc"
    replica = replica_from_settings(settings, elector)
    assert isinstance(replica, StateReplica)
    replica.close()
    # The rest is the single-replica package, unchanged.
    single = by_name(render())
    for name in ("Role/hiclaw-gitops", "ServiceAccount/hiclaw-gitops", "Service/hiclaw-gitops"):
        assert rendered_ha[name] == single[name], name


def test_the_fallback_renderer_agrees_with_kustomize() -> None:
    """Where kubectl is installed, `build` (used where it is not) must give what kustomize gives."""
    if not shutil.which("kubectl"):
        return  # nothing to compare with here; `render` above used `build`
    for root in (MANIFESTS, HA):
        ours, theirs = by_name(build(root)), by_name(render(root))
        assert set(ours) == set(theirs), root
        for name, doc in theirs.items():
            assert ours[name].get("spec") == doc.get("spec") and ours[name].get("data") == doc.get("data"), name
            assert ours[name]["metadata"]["namespace"] == doc["metadata"]["namespace"], name
