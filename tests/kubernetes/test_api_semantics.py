"""What the backend relies on from the API server, checked on the fake (and on a live cluster with KUBECONFIG):
server-side apply with managed fields and conflicts, label selectors, resourceVersion conflicts, 404/409/422;
and how the backend answers failures — 429 and 5xx retryable, 422 and 403 permanent, bad answers named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubeharness import KubeEnv
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from backends.kubernetes import KubernetesBackend
from backends.kubernetes_api import FIELD_MANAGER, KubeApi
from gitops.providers.conformance import secret_resolver, type_scope
from gitops.providers.protocol import PermanentError, TransientError


def _cm(env: KubeEnv, name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": env.namespace,
                         "labels": {"hiclaw.io/test-session": env.session, **labels}}}


def _apply(env: KubeEnv, body: dict[str, Any], manager: str, force: bool = False) -> dict[str, Any]:
    core = client.CoreV1Api(env.raw.client())
    kw: dict[str, Any] = {"field_manager": manager, "_content_type": "application/apply-patch+yaml"}
    if force:
        kw["force"] = True
    raw = core.patch_namespaced_service_account(body["metadata"]["name"], env.namespace, body,
                                                _preload_content=False, **kw)
    return dict(json.loads(raw.data))  # type: ignore[attr-defined]  # a raw response


def test_apply_creates_then_conflicts_without_force(kube_env: KubeEnv) -> None:
    made = _apply(kube_env, _cm(kube_env, "ssa-one", tier="a"), "first")
    managers = {m["manager"] for m in made["metadata"]["managedFields"]}
    assert managers == {"first"}
    with pytest.raises(ApiException) as caught:
        _apply(kube_env, _cm(kube_env, "ssa-one", tier="b"), "second")
    assert caught.value.status == 409
    taken = _apply(kube_env, _cm(kube_env, "ssa-one", tier="b"), "second", force=True)
    assert taken["metadata"]["labels"]["tier"] == "b"
    # The same value under two managers is shared, not a conflict.
    _apply(kube_env, _cm(kube_env, "ssa-one", tier="b"), "first")


def test_apply_removes_what_a_manager_stops_declaring(kube_env: KubeEnv) -> None:
    _apply(kube_env, _cm(kube_env, "ssa-two", tier="a", extra="x"), "first")
    after = _apply(kube_env, _cm(kube_env, "ssa-two", tier="a"), "first")
    assert "extra" not in after["metadata"]["labels"]


def test_label_selectors(kube_env: KubeEnv) -> None:
    for name, tier in (("sel-a", "web"), ("sel-b", "db"), ("sel-c", "")):
        labels = {"tier": tier} if tier else {}
        _apply(kube_env, _cm(kube_env, name, **labels), FIELD_MANAGER)
    session = f"hiclaw.io/test-session={kube_env.session}"

    def names(selector: str) -> set[str]:
        return {i["metadata"]["name"] for i in kube_env.raw.list("ServiceAccount", kube_env.namespace,
                                                                   f"{session},{selector}")}
    assert names("tier=web") == {"sel-a"}
    assert names("tier!=web") == {"sel-b", "sel-c"}
    assert names("tier in (web,db)") == {"sel-a", "sel-b"}
    assert names("tier notin (web)") == {"sel-b", "sel-c"}
    assert names("tier") == {"sel-a", "sel-b"}
    assert names("!tier") == {"sel-c"}


def test_stale_resource_version_is_a_conflict(kube_env: KubeEnv) -> None:
    made = kube_env.raw.create(_cm(kube_env, "rv-one"), kube_env.namespace)
    stale = dict(made)
    kube_env.raw.replace(made, kube_env.namespace)  # someone else wrote in between
    with pytest.raises(TransientError, match="409"):
        kube_env.raw.replace(stale, kube_env.namespace)
    with pytest.raises(TransientError, match="409"):
        kube_env.raw.create(_cm(kube_env, "rv-one"), kube_env.namespace)  # exists


def test_invalid_objects_are_refused_permanently(kube_env: KubeEnv) -> None:
    with pytest.raises(PermanentError, match="422") as caught:
        kube_env.raw.apply(_cm(kube_env, "Not_A_Name"), kube_env.namespace)
    assert "apply ServiceAccount" in str(caught.value)


def test_missing_namespace_is_permanent_and_named(kube_env: KubeEnv) -> None:
    backend = KubernetesBackend(kube_env.settings(namespace="no-such-namespace-here"))
    try:
        with pytest.raises(PermanentError, match="no-such-namespace-here"):
            backend.apply(kube_env.desired("ns"), "create", None, secret_resolver())
    finally:
        backend.close()


# Faults (fake only: a real server cannot be told to fail) ----------------------------------------------


@pytest.fixture
def fake_env(kube_env: KubeEnv) -> KubeEnv:
    if kube_env.cluster is None:
        pytest.skip("fault injection needs the fake API server")
    return kube_env


def test_429_is_transient_with_retry_after(fake_env: KubeEnv) -> None:
    assert fake_env.cluster is not None
    fake_env.cluster.fail_next("list", "deployments", 429, retry_after=7)
    backend = fake_env.backend()
    try:
        with pytest.raises(TransientError) as caught:
            backend.observe(type_scope(backend.types))
        assert caught.value.retry_after == 7.0 and "list Deployments" in str(caught.value)
    finally:
        backend.close()


@pytest.mark.parametrize(("code", "kind"), [(500, TransientError), (403, PermanentError), (409, TransientError)])
def test_failures_are_classified_and_name_the_request(fake_env: KubeEnv, code: int, kind: type) -> None:
    assert fake_env.cluster is not None
    backend = fake_env.backend()
    resolve = secret_resolver()
    try:
        fake_env.cluster.fail_next("patch", "secrets", code)
        with pytest.raises(kind) as caught:
            backend.apply(fake_env.desired("faulty"), "create", None, resolve)
        assert "apply Secret hiclaw/hiclaw-worker-faulty" in str(caught.value)
        assert "s3cr3t-value-for" not in str(caught.value)
    finally:
        backend.close()


def test_an_answer_of_the_wrong_shape_is_named(fake_env: KubeEnv) -> None:
    assert fake_env.cluster is not None
    cluster = fake_env.cluster
    original = cluster._list
    cluster._list = lambda *a: {**original(*a), "items": {"not": "a list"}}
    api = KubeApi()
    try:
        with pytest.raises(PermanentError, match=r"list Deployments in hiclaw .* not a list"):
            api.list("Deployment", "hiclaw", "a=b")
    finally:
        api.close()
        cluster._list = original


def test_unreachable_server_is_transient(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: c, cluster: {server: "
        f"'http://127.0.0.1:{port}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    api = KubeApi()
    try:
        with pytest.raises(TransientError, match="unreachable"):
            api.list("Deployment", "hiclaw", "a=b")
    finally:
        api.close()


def test_no_configuration_is_permanent(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    api = KubeApi()
    with pytest.raises(PermanentError, match="connect to Kubernetes: no usable Kubernetes configuration"):
        api.list("Deployment", "hiclaw", "a=b")


def test_a_no_op_apply_writes_nothing_and_managers_keep_their_operation(kube_env: KubeEnv) -> None:
    first = _apply(kube_env, _cm(kube_env, "ssa-noop", tier="a"), "first")
    again = _apply(kube_env, _cm(kube_env, "ssa-noop", tier="a"), "first")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    core = client.CoreV1Api(kube_env.raw.client())
    raw = core.patch_namespaced_service_account(
        "ssa-noop", kube_env.namespace, {"metadata": {"labels": {"other": "x"}}}, field_manager="kubectl",
        _content_type="application/merge-patch+json", _preload_content=False)
    merged = json.loads(raw.data)  # type: ignore[attr-defined]  # a raw response
    operations = {m["manager"]: m["operation"] for m in merged["metadata"]["managedFields"]}
    assert operations == {"first": "Apply", "kubectl": "Update"}


def test_a_deployment_of_the_wrong_shape_is_not_trusted(fake_env: KubeEnv) -> None:
    """Someone rewrote our Deployment with fields of shapes the API would not give: observation does not fail,
    the record is not trusted, and the next apply writes it again."""
    assert fake_env.cluster is not None
    backend = fake_env.backend()
    resolve = secret_resolver()
    try:
        obj = fake_env.desired("shapes", state="Running")
        backend.apply(obj, "create", None, resolve)
        key = ("deployments", fake_env.namespace, obj.name)
        with fake_env.cluster.lock:
            fake_env.cluster.objects[key]["spec"]["template"] = ["not", "a", "mapping"]
            fake_env.cluster.objects[key]["spec"]["replicas"] = "one"
        seen = backend.observe(type_scope(backend.types))[obj.key]
        assert seen.recorded_hash is None and seen.spec["image"] == ""
        assert backend.apply(obj, "update", seen, resolve).outcome.value == "configured"
        assert backend.observe(type_scope(backend.types))[obj.key].recorded_hash == obj.hash
    finally:
        backend.close()
