"""The Kubernetes test environment: the fake API server (or a real cluster, for the `live` marker), and the
conformance harness for agents as Deployments.

Every test gets its own instance label, so tests on one cluster never see each other's objects.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from fakeapi import FakeCluster

from backends.kubernetes import KubernetesBackend
from backends.kubernetes_api import KubeApi
from backends.kubernetes_objects import LABEL_MANAGED_BY
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.providers.conformance import secret_resolver
from gitops.providers.protocol import BackendContext, Resolve
from gitops.settings.model import RuntimeSettings

SESSION_LABEL = "hiclaw.io/test-session"
IMAGES = {"openclaw": "hiclaw/worker-agent:test", "copaw": "hiclaw/copaw-worker:test",
          "hermes": "hiclaw/hermes-worker:test"}


class KubeEnv:
    """The conformance harness (`gitops.providers.conformance.Harness`) on the fake or a live cluster."""

    backend_class = KubernetesBackend
    records_hash = True  # the spec-hash annotation

    def __init__(self, namespace: str, cluster: FakeCluster | None) -> None:
        self.namespace = namespace
        self.cluster = cluster  # None on a live cluster
        self.session = secrets.token_hex(4)
        self.instance = f"hiclaw-test-{self.session}"
        self.resolve: Resolve = secret_resolver()
        self.raw = KubeApi()
        self._foreign: dict[str, str] = {}

    def settings(self, **changes: Any) -> RuntimeSettings:
        return RuntimeSettings(**{"backend": "kubernetes", "instance": self.instance, "namespace": self.namespace,
                                  **changes})

    def context(self) -> BackendContext:
        return BackendContext(settings=self.settings(), instance=self.instance)

    def backend(self) -> KubernetesBackend:
        return KubernetesBackend(self.context())

    def desired(self, name: str, revision: int = 0, *, runtime: str = "openclaw", enforce: bool = True,
                state: str | None = None, config: str = "cfg-0", image: str | None = None,
                extra_env: Mapping[str, str] | None = None) -> ManagedObject:
        """A worker like the compiler's. Revisions alternate the state (an in-place update)."""
        env = {
            "HICLAW_WORKER_NAME": name,
            "HICLAW_WORKER_CR_NAME": name,
            "HICLAW_WORKER_MATRIX_TOKEN": secret_ref(f"agent/{name}/matrix-token"),
            "HOME": f"/root/hiclaw-fs/agents/{name}",
            **(extra_env or {}),
        }
        labels = {
            LABEL_MANAGED_BY: self.instance,
            "hiclaw.io/kind": "Worker",
            "hiclaw.io/name": name,
            "hiclaw.io/role": "standalone",
            "hiclaw.io/runtime": runtime,
            SESSION_LABEL: self.session,
        }
        spec = {
            "image": image or IMAGES[runtime],
            "runtime": runtime,
            "role": "standalone",
            "env": dict(sorted(env.items())),
            "labels": labels,
            "ports": [{"container": 8088}],
            "state": state or ("Running", "Sleeping")[revision % 2],
            "enforce_state": enforce,
            "config_hash": config,
        }
        return ManagedObject(Provider.RUNTIME, "container", f"hiclaw-worker-{name}", spec, f"Worker/{name}")

    def replaced(self, obj: ManagedObject) -> ManagedObject:
        """The runtime switch: another runtime's image and label, same name and identity."""
        name = obj.spec["env"]["HICLAW_WORKER_NAME"]
        return self.desired(name, runtime="copaw" if obj.spec["runtime"] != "copaw" else "hermes",
                            state=obj.spec["state"], enforce=obj.spec["enforce_state"])

    def count(self, name: str) -> int:
        return 1 if self.raw.get("Deployment", self.namespace, name) is not None else 0

    def plant_foreign(self, name: str) -> None:
        labels = {LABEL_MANAGED_BY: "someone-else", SESSION_LABEL: self.session, "app": name}
        made = self.raw.create({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "x", "image": "busybox:stable"}]}}},
        }, self.namespace)
        self._foreign[name] = made["metadata"]["resourceVersion"]

    def foreign_intact(self, name: str) -> bool:
        found = self.raw.get("Deployment", self.namespace, name)
        return found is not None and found["metadata"]["resourceVersion"] == self._foreign.get(name)

    # Helpers ---------------------------------------------------------------------------------------------

    def deployment(self, obj: ManagedObject) -> dict[str, Any] | None:
        return self.raw.get("Deployment", self.namespace, obj.name)

    def cleanup(self) -> None:
        for kind in ("Deployment", "Service", "Secret", "ServiceAccount"):
            for item in self.raw.list(kind, self.namespace, f"{SESSION_LABEL}={self.session}"):
                self.raw.delete(kind, self.namespace, item["metadata"]["name"])
        self.raw.close()
