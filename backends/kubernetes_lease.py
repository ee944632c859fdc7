"""The leader-election lease as a `coordination.k8s.io/v1` Lease (the `gitops.daemon.leader.LeaseStore` protocol).

Reads are a GET; writes are a create, or a PUT carrying the resourceVersion that was read, so the API server
refuses (409) a write based on a stale read — the only guarantee leader election needs from the store.
"""

from __future__ import annotations

from typing import Any

from backends.kubernetes_api import KubeApi
from gitops.daemon.leader import LeaseConflict, LeaseRecord
from gitops.providers.protocol import ConflictError


class KubeLeaseStore:
    """The Lease `name` in `namespace`, through `api` (one of the backend's `KubeApi`)."""

    def __init__(self, name: str, namespace: str, api: KubeApi | None = None) -> None:
        self.name, self.namespace = name, namespace
        self.api = api or KubeApi()

    def get(self) -> LeaseRecord | None:
        found = self.api.get("Lease", self.namespace, self.name)
        return None if found is None else self._record(found)

    def create(self, record: LeaseRecord) -> LeaseRecord:
        return self._write(record, create=True)

    def update(self, record: LeaseRecord) -> LeaseRecord:
        return self._write(record, create=False)

    def close(self) -> None:
        self.api.close()

    def _write(self, record: LeaseRecord, create: bool) -> LeaseRecord:
        spec: dict[str, Any] = {"leaseDurationSeconds": max(1, round(record.duration)),
                                "leaseTransitions": record.transitions, "renewTime": record.renewed or None}
        spec["holderIdentity"] = record.holder or None
        if record.acquired:
            spec["acquireTime"] = record.acquired
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": {"app.kubernetes.io/name": "hiclaw-gitops"}}
        if record.version and not create:
            meta["resourceVersion"] = record.version
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}
        try:
            written = self.api.create(body, self.namespace) if create else self.api.replace(body, self.namespace)
        except ConflictError as exc:  # stale resourceVersion, or created by someone else first
            raise LeaseConflict(str(exc)) from None
        return self._record(written)

    def _record(self, item: dict[str, Any]) -> LeaseRecord:
        found = item.get("spec")
        spec: dict[str, Any] = found if isinstance(found, dict) else {}
        renewed = str(spec.get("renewTime") or "")
        duration = spec.get("leaseDurationSeconds")
        return LeaseRecord(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(duration) if isinstance(duration, (int, float)) else 0.0,
            renewed=renewed,
            transitions=int(spec.get("leaseTransitions") or 0),
            acquired=str(spec.get("acquireTime") or ""),
            version=str((item.get("metadata") or {}).get("resourceVersion") or ""),
        )
