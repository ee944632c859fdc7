"""The backend conformance suite on the storage backend's files, against the module's real SeaweedFS.

`ConformanceSuite` runs on `object` (one file in the bucket: owned by our instance label, its hash in its
metadata, content carrying a secret as agents' `openclaw.json` does). No field of a file forces re-creation, so
a "replace" is a write in place (`replaced` is None). The other types are
covered in test_seaweedfs.py: the bucket is never deleted (a round trip cannot remove it), an area is a view of
its files (archived on delete), and users carry no label (a user under an agent's name is adopted, not foreign).
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from minio.error import S3Error

from backends.storage import StorageBackend
from deploy.seaweedfs import SeaweedFS
from gitops.apply.secrets import SecretStore
from gitops.objects import ManagedObject, Provider, secret_ref
from gitops.providers.conformance import (
    ConformanceSuite,
)
from gitops.providers.protocol import ApplyResult, Backend, BackendContext, Observed, Outcome, Resolve, Scope
from gitops.settings.model import StorageSettings

OWNER = "Worker/conf"
JSON = "application/json"


class BucketHidden:
    """The backend as the suite sees it: observations without the bucket. The harness made the bucket (files
    need one) and a bucket is never deleted, so the suite's "nothing observed before, nothing after a delete"
    would otherwise count it; everything else passes through untouched."""

    def __init__(self, inner: StorageBackend) -> None:
        self.inner = inner
        self.provider, self.types, self.traits = inner.provider, inner.types, inner.traits
        self.hidden = f"storage/bucket/{inner.settings.bucket}"

    def observe(self, scope: Scope) -> dict[str, Observed]:
        return {k: v for k, v in self.inner.observe(scope).items() if k != self.hidden}

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        return self.inner.apply(obj, action, before, resolve)

    def delete(self, obj: ManagedObject) -> Outcome:
        return self.inner.delete(obj)

    def close(self) -> None:
        self.inner.close()


class StorageHarness:
    """A bucket of its own on the module's SeaweedFS and a secret store on the suite's state directory."""

    backend_class = StorageBackend
    lists_owned = False  # a listing has no labels: named keys are asked, all keys only for "everything of ours"

    def __init__(self, store: SeaweedFS, state_dir: Path) -> None:
        self.bucket = "conf-" + secrets.token_hex(4)
        self.settings = StorageSettings(
            endpoint=store.endpoint, bucket=self.bucket, access_key_file=str(store.access_key_file),
            secret_key_file=str(store.secret_key_file))
        self.store = SecretStore(state_dir, key="")
        access, secret = store.admin_keys()
        self.admin = Minio(store.endpoint, access, secret, secure=False, region="us-east-1")
        self.admin.make_bucket(self.bucket)
        self.planted: dict[str, bytes] = {}

    @staticmethod
    def key(name: str) -> str:
        return name  # the object's name is its key (the suite counts and plants by object name)

    def context(self) -> BackendContext:
        return BackendContext(settings=self.settings, secrets=self.store)

    def backend(self) -> Backend:
        return BucketHidden(StorageBackend(self.context()))

    def desired(self, name: str, revision: int = 0) -> ManagedObject:
        key = secret_ref(f"gateway/worker-{name}/key")  # as the model provider's apiKey in openclaw.json
        content = {"models": {"providers": {"hiclaw-gateway": {"apiKey": key}}}, "revision": revision}
        spec = {"bucket": self.bucket, "key": self.key(name), "content": content, "content_type": JSON}
        return ManagedObject(Provider.STORAGE, "object", self.key(name), spec, OWNER)

    def replaced(self, obj: ManagedObject) -> None:
        return None  # a file has no field that forces re-creation

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.store.resolve(spec)

    def _read(self, key: str) -> bytes | None:
        try:
            answer = self.admin.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        try:
            return answer.read()
        finally:
            answer.close()
            answer.release_conn()

    def count(self, name: str) -> int:
        return int(self._read(self.key(name)) is not None)

    def plant_foreign(self, name: str) -> None:
        body = json.dumps({"written by": "someone else", "nonce": secrets.token_hex(4)}).encode()
        self.admin.put_object(self.bucket, self.key(name), io.BytesIO(body), len(body), content_type=JSON)
        self.planted[name] = body

    def foreign_intact(self, name: str) -> bool:
        return name in self.planted and self._read(self.key(name)) == self.planted[name]

    def close(self) -> None:
        self.admin._http.clear()
        self.store.close()


class TestStorageFiles(ConformanceSuite):
    @pytest.fixture
    def harness(self, seaweed: SeaweedFS, tmp_path: Path) -> Iterator[StorageHarness]:
        harness = StorageHarness(seaweed, tmp_path / "state")
        yield harness
        harness.close()
