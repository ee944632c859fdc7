"""A secret store in Kubernetes Secrets, for replicas that share no disk: the `SecretStore` surface on the API.

Each stored credential is one Secret in the reconciler's namespace, named `hiclaw-secret-<digest>` (the
digest of instance and credential name: names such as `matrix/alice/password` are not object names), with
the credential's name in the annotation `hiclaw.io/secret-name`, the value in `data.value`, and the labels
`hiclaw.io/managed-by=<instance>`, `hiclaw.io/secret-store=true`. Encryption at rest is the cluster's (etcd
encryption); `HICLAW_GITOPS_SECRET_KEY` does not apply here.

Reads come from one label-selector list, kept for `max_age` seconds (3 by default): a plan that digests
thousands of credentials costs one call, not one per credential. That age is below leader election's
`lease_duration - renew_deadline` (5 s by default), so a replica that has just taken the lease over never
works from a list older than the previous leader's last write. Writes (server-side apply, delete) are fenced
like the backend's: a replica that does not lead cannot write a credential.

Values never appear in a repr, a log line or a message, and every value handed out is registered with the
settings redactor, as the file store does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from backends.kubernetes_api import KubeApi
from backends.kubernetes_objects import LABEL_MANAGED_BY, LABEL_SECRET_STORE
from gitops.apply.secrets import SecretMissing, SecretStore
from gitops.settings.load import REDACTOR

LABEL_STORE = LABEL_SECRET_STORE
ANN_NAME = "hiclaw.io/secret-name"


class KubeSecretStore(SecretStore):
    """Credentials by name in Kubernetes Secrets. Thread-safe; a drop-in for the file store."""

    def __init__(self, namespace: str, instance: str = "hiclaw-gitops", api: KubeApi | None = None,
                 max_age: float = 3.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        # The file store's storage is not opened: only its resolving logic is shared.
        self.namespace, self.instance = namespace, instance
        self.api = api or KubeApi()
        self.max_age = max_age
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._values: dict[str, str] = {}
        self._loaded_at: float | None = None
        self._cipher = None

    @property
    def selector(self) -> str:
        return f"{LABEL_MANAGED_BY}={self.instance},{LABEL_STORE}=true"

    def __repr__(self) -> str:
        return f"KubeSecretStore(namespace={self.namespace!r}, instance={self.instance!r})"

    def close(self) -> None:
        self.api.close()

    def object_name(self, name: str) -> str:
        return "hiclaw-secret-" + hashlib.sha256(f"{self.instance}\0{name}".encode()).hexdigest()[:32]

    # Reading and writing -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._fresh())

    def _read(self, name: str) -> str | None:
        with self._lock:
            return self._fresh().get(name)

    def get(self, name: str) -> str:
        value = self._read(name)
        if value is None:
            raise SecretMissing(f"no secret named {name!r} in the Kubernetes secret store ({self.namespace})")
        return value

    def delete(self, name: str) -> None:
        with self._lock:
            self.api.delete("Secret", self.namespace, self.object_name(name))
            self._values.pop(name, None)

    # The API -----------------------------------------------------------------------------------------

    def _fresh(self) -> dict[str, str]:
        now = self._monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self.max_age:
            values: dict[str, str] = {}
            for item in self.api.list("Secret", self.namespace, self.selector):
                name, value = _entry(item)
                if name and value is not None:
                    values[name] = value
                    REDACTOR.add(value)
            self._values, self._loaded_at = values, now
        return self._values

    def _write(self, name: str, value: str, replace: bool = True) -> None:
        """Server-side apply: an upsert whatever `replace` says; two writers are kept apart by leader election."""
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": self.object_name(name), "namespace": self.namespace,
                         "labels": {LABEL_MANAGED_BY: self.instance, LABEL_STORE: "true"},
                         "annotations": {ANN_NAME: name}},
            "data": {"value": base64.b64encode(value.encode()).decode()},
        }
        self.api.apply(body, self.namespace, (value,))
        self._values[name] = value


def _entry(item: dict[str, Any]) -> tuple[str, str | None]:
    """(credential name, value) of a listed Secret; a value that does not decode counts as absent."""
    meta = item.get("metadata") or {}
    found = meta.get("annotations")
    annotations: dict[str, Any] = found if isinstance(found, dict) else {}
    name = str(annotations.get(ANN_NAME) or "")
    data = item.get("data")
    encoded = data.get("value") if isinstance(data, dict) else None
    if not isinstance(encoded, str):
        return name, None
    try:
        return name, base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return name, None
