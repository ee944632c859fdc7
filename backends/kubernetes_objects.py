"""What one agent is on Kubernetes: the manifests built from a compiled `runtime/container` object, and what the
listed objects say about it (pure: no API calls).

Per agent, all named like the container (`hiclaw-worker-<name>`, `hiclaw-manager`):
- a ServiceAccount (no API token mounted: agents do not call the Kubernetes API);
- a Secret holding the credentials the agent consumes (every env value that was a `secret://` reference),
  referenced from the Deployment by `secretKeyRef`, never written into the Deployment;
- a Service for the container ports (ClusterIP), when the spec has any;
- a Deployment, strategy Recreate, replicas 1 (Running) or 0 (Sleeping), with the spec's labels plus
  `hiclaw.io/managed-by`, and three annotations of ours: `hiclaw.io/spec-hash` (obj.hash),
  `hiclaw.io/applied-spec` (the desired spec as applied: canonical JSON, secret references never values) and
  `hiclaw.io/consumed` (digest of the credentials handed over). The pod template carries
  `hiclaw.io/config-hash` and `hiclaw.io/consumed`, so a config-only change or a rotated credential changes
  the template and Kubernetes rolls the pod.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops.objects import SECRET_PREFIX, canonical_json, object_hash

LABEL_MANAGED_BY = "hiclaw.io/managed-by"
LABEL_SECRET_STORE = "hiclaw.io/secret-store"  # a credential of the secret store (backends.kubernetes_secrets)
LABEL_STATE_SNAPSHOT = "hiclaw.io/state-snapshot"  # a chunk of a state snapshot (backends.kubernetes_state)
LABEL_WORKLOAD = "hiclaw.io/workload"  # the Deployment's selector, with managed-by: never changes for a name
ANN_SPEC_HASH = "hiclaw.io/spec-hash"
ANN_APPLIED = "hiclaw.io/applied-spec"
ANN_CONSUMED = "hiclaw.io/consumed"
ANN_CONFIG = "hiclaw.io/config-hash"
ANN_POD = "hiclaw.io/pod-settings"  # digest of the pod settings applied (runtime.resources, node_selector, ...)
POD_DRIFT = "pod_settings"  # the pseudo-field an observation shows when they differ from the settings
CONTAINER = "agent"
RUNNING, SLEEPING, STOPPED = "Running", "Sleeping", "Stopped"
STATES = (RUNNING, SLEEPING, STOPPED)
KINDS = ("Deployment", "ServiceAccount", "Secret", "Service")


def labels_for(spec: Mapping[str, Any], instance: str) -> dict[str, str]:
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    labels[LABEL_MANAGED_BY] = instance
    return dict(sorted(labels.items()))


def _meta(name: str, namespace: str, labels: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels), **extra}


def secret_env(spec: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, str]:
    """The env entries that were secret references, with their resolved values (the Secret's content)."""
    plain = spec.get("env") or {}
    values = resolved.get("env") or {}
    return {str(k): str(values[k]) for k, v in sorted(plain.items())
            if isinstance(v, str) and SECRET_PREFIX in v and k in values}


@dataclass(frozen=True, slots=True)
class Manifests:
    """Everything applied for one agent. `secrets` are resolved values (scrubbed from messages); the repr
    never shows them."""

    deployment: Mapping[str, Any]
    service_account: Mapping[str, Any]
    secret: Mapping[str, Any] | None
    service: Mapping[str, Any] | None
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Manifests({self.deployment['metadata']['name']})"


def pod_settings(resources: Mapping[str, Any], node_selector: Mapping[str, str], tolerations: Iterable[Any],
                 image_pull_secrets: Iterable[str]) -> dict[str, Any]:
    """What the runtime settings add to every agent's pod, in the pod spec's own terms; only what is set."""
    pod: dict[str, Any] = {}
    if resources:
        pod["resources"] = {k: dict(v) for k, v in sorted(resources.items()) if v}
    if node_selector:
        pod["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        pod["tolerations"] = [dict(t) for t in tolerations]
    if image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": str(n)} for n in image_pull_secrets]
    return pod


def pod_digest(pod: Mapping[str, Any]) -> str:
    """'' for no pod settings (so Deployments made before they existed are not rolled for nothing)."""
    return object_hash(dict(pod), "")[:16] if pod else ""


def manifests(name: str, namespace: str, instance: str, spec: Mapping[str, Any], spec_hash: str, consumed: str,
              resolved: Mapping[str, Any], pod: Mapping[str, Any] | None = None) -> Manifests:
    """The four manifests of one agent; PermanentError-free: Kubernetes validates what it is sent (422). `pod`:
    what the runtime settings add to every pod (`pod_settings`)."""
    labels = labels_for(spec, instance)
    state = str(spec.get("state") or RUNNING)
    credentials = secret_env(spec, resolved)
    env: list[dict[str, Any]] = []
    for key, value in sorted((spec.get("env") or {}).items()):
        if key in credentials:
            env.append({"name": str(key), "valueFrom": {"secretKeyRef": {"name": name, "key": str(key)}}})
        else:
            env.append({"name": str(key), "value": str(value)})
    ports = [_port(p) for p in spec.get("ports") or ()]
    selector = {LABEL_MANAGED_BY: instance, LABEL_WORKLOAD: name}
    container: dict[str, Any] = {"name": CONTAINER, "image": str(spec.get("image") or ""), "env": env}
    if ports:
        container["ports"] = [{"containerPort": p, "protocol": proto} for p, proto in ports]
    home = (spec.get("env") or {}).get("HOME")
    if home:
        container["workingDir"] = str(home)
    template_annotations = {ANN_CONFIG: str(spec.get("config_hash") or "")}
    if consumed:
        template_annotations[ANN_CONSUMED] = consumed
    annotations = {ANN_SPEC_HASH: spec_hash, ANN_APPLIED: canonical_json(dict(spec))}
    if consumed:
        annotations[ANN_CONSUMED] = consumed
    pod = pod or {}
    if "resources" in pod:
        container["resources"] = pod["resources"]
    pod_spec: dict[str, Any] = {"serviceAccountName": name, "automountServiceAccountToken": False,
                                "containers": [container]}
    pod_spec.update({k: v for k, v in pod.items() if k != "resources"})
    if pod:
        annotations[ANN_POD] = pod_digest(pod)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, namespace, {**labels, LABEL_WORKLOAD: name}, annotations=annotations),
        "spec": {
            "replicas": 1 if state == RUNNING else 0,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**labels, LABEL_WORKLOAD: name}, "annotations": template_annotations},
                "spec": pod_spec,
            },
        },
    }
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, labels),
                       "automountServiceAccountToken": False}
    secret = None
    if credentials:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, namespace, labels), "type": "Opaque",
                  "data": {k: base64.b64encode(v.encode()).decode() for k, v in credentials.items()}}
    service = None
    if ports:
        service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, labels),
                   "spec": {"type": "ClusterIP", "selector": selector,
                            "ports": [{"name": f"{proto.lower()}-{p}", "port": p, "targetPort": p, "protocol": proto}
                                      for p, proto in ports]}}
    return Manifests(deployment, service_account, secret, service, tuple(credentials.values()))


def _port(port: Mapping[str, Any]) -> tuple[int, str]:
    from gitops.providers.protocol import PermanentError

    try:
        number = int(port["container"])
    except (KeyError, TypeError, ValueError):
        raise PermanentError(f"port {dict(port)!r} has no container port") from None
    return number, str(port.get("protocol") or "tcp").upper()


# Observation ---------------------------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Workload:
    """One agent's Deployment as listed, and whether its companions exist."""

    name: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    image: str
    replicas: int
    companions: frozenset[str]  # kinds of ours found under the same name (ServiceAccount, Secret, Service)

    @classmethod
    def of(cls, item: Mapping[str, Any], companions: Iterable[str]) -> Workload:
        # Any field may have any shape (anyone may have written the object): a wrong one counts as absent,
        # and the record is then not trusted (recorded_hash None), so the next apply writes it again.
        meta = _map(item.get("metadata"))
        spec = _map(item.get("spec"))
        containers = _map(_map(spec.get("template")).get("spec")).get("containers")
        first = _map(containers[0]) if isinstance(containers, list) and containers else {}
        replicas = spec.get("replicas", 1)
        return cls(
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=_str_map(meta.get("labels")),
            annotations=_str_map(meta.get("annotations")),
            image=str(first.get("image") or ""),
            replicas=replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 1,
            companions=frozenset(companions),
        )

    @property
    def state(self) -> str:
        return RUNNING if self.replicas > 0 else SLEEPING

    @property
    def consumed(self) -> str:
        return self.annotations.get(ANN_CONSUMED, "")

    def applied(self, instance: str) -> dict[str, Any] | None:
        """The applied spec recorded on the Deployment, if intact and the cluster still agrees with it."""
        text, recorded = self.annotations.get(ANN_APPLIED), self.annotations.get(ANN_SPEC_HASH)
        if not text or not recorded:
            return None
        try:  # an annotation anyone with access may have edited
            applied = json.loads(text)
            if not isinstance(applied, dict) or object_hash(applied, self.consumed) != recorded:
                return None
        except (ValueError, TypeError, RecursionError):
            return None
        needed = {"ServiceAccount"}
        if any(isinstance(v, str) and SECRET_PREFIX in v for v in (applied.get("env") or {}).values()):
            needed.add("Secret")
        if applied.get("ports"):
            needed.add("Service")
        agrees = (
            str(applied.get("image", "")) == self.image
            and all(self.labels.get(k) == v for k, v in labels_for(applied, instance).items())
            and needed <= self.companions
        )
        return applied if agrees else None

    def recorded_hash(self, instance: str, state: str | None = None) -> str | None:
        applied = self.applied(instance)
        if applied is None:
            return None
        if applied.get("enforce_state") is True:
            return object_hash({**applied, "state": state or self.state}, self.consumed)
        return self.annotations[ANN_SPEC_HASH]

    def observed_spec(self, instance: str) -> dict[str, Any]:
        """The applied record overlaid with what the cluster shows (image, our labels, state); without an intact
        record, those three alone."""
        applied = self.applied(instance)
        labels = {k: v for k, v in sorted(self.labels.items()) if k != LABEL_WORKLOAD}
        if applied is not None:  # labels someone else added (kubectl label) are theirs, not drift
            ours = labels_for(applied, instance)
            labels = {k: v for k, v in labels.items() if k in ours}
        seen = {"image": self.image, "labels": labels, "state": self.state}
        return {**applied, **seen} if applied is not None else seen
