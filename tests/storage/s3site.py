"""Test support for the storage tests: an org reconciled onto the module's real SeaweedFS with the storage backend,
and S3 clients as the store's admin or as one agent with its own generated key (never printed)."""

from __future__ import annotations

import io
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from minio.error import S3Error

from backends.storage import StorageBackend
from deploy.seaweedfs import SeaweedFS, SeaweedFSError
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import Provider, secret_refs
from gitops.pipeline import ReconcileResult, desired_state, read_org, reconcile
from gitops.providers.protocol import BackendContext
from gitops.settings.model import PruneSettings, Settings, StorageSettings
from gitops.source.files import DirectorySource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ORG = ROOT / "example-org"
DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")


class Site:
    """A copy of an org, a state directory, and a storage backend on the module's SeaweedFS."""

    def __init__(self, store: SeaweedFS, root: Path, org: Path = EXAMPLE_ORG, *, bucket: str = "",
                 purge: bool = False, identity: str = "aws-iam") -> None:
        self.store = store
        self.org = root / "org"
        shutil.copytree(org, self.org)
        self.storage = StorageSettings(
            endpoint=store.endpoint, bucket=bucket or "hiclaw-" + secrets.token_hex(4),
            access_key_file=str(store.access_key_file), secret_key_file=str(store.secret_key_file),
            identity=identity)
        self.settings = Settings(state_dir=str(root / "state"), storage=self.storage,
                                 prune=PruneSettings(purge_storage=purge, max_agents=100, max_fraction=1.0))
        self.state = StateStore(self.settings.state_dir)
        self.secrets = SecretStore(self.settings.state_dir, key="")
        self.backend = StorageBackend(BackendContext(settings=self.storage, secrets=self.secrets))
        self._clients: list[Minio] = []

    def seed_matrix_tokens(self, names: list[str]) -> None:
        """Matrix is not enabled here: stand-in tokens for the files that carry one (outputs of a login)."""
        for rt in names:
            if self.secrets.peek(f"matrix/{rt}/token") is None:
                self.secrets.put(f"matrix/{rt}/token", "syt_" + secrets.token_hex(8))

    def seed_matrix_tokens_of_org(self) -> int:
        """As seed_matrix_tokens, for every token the compiled org refers to; how many."""
        names = {ref for obj in desired_state(read_org(DirectorySource(self.org)), self.settings).objects.values()
                 for ref in secret_refs(obj.spec) if ref.startswith("matrix/") and ref.endswith("/token")}
        self.seed_matrix_tokens(sorted(n.split("/")[1] for n in names))
        return len(names)

    def reconcile(self, *, check: bool = True) -> ReconcileResult:
        result = reconcile(DirectorySource(self.org), self.settings, store=self.state, secrets=self.secrets,
                           backends={Provider.STORAGE: self.backend})
        if check:
            failed = result.run.failed if result.run else ()
            assert result.ok, (result.phase, result.error, [(s.key, s.message) for s in failed])
        return result

    def admin(self) -> Minio:
        access, secret = self.store.admin_keys()
        return self._keep(Minio(self.store.endpoint, access, secret, secure=False, region="us-east-1"))

    def _keep(self, client: Minio) -> Minio:
        self._clients.append(client)
        return client

    def agent(self, rt: str) -> Minio:
        secret = self.secrets.peek(f"storage/{rt}/secret-key")
        assert secret is not None, f"{rt}: no generated secret key in the store"
        return self._keep(Minio(self.store.endpoint, rt.replace("-", "X"), secret, secure=False, region="us-east-1"))

    def secret_values(self) -> list[str]:
        return [v for n in self.secrets.names() if (v := self.secrets.peek(n))]

    def close(self) -> None:
        for client in self._clients:
            client._http.clear()
        self.backend.close()
        self.secrets.close()
        self.state.close()


def attempt(fn: Any, *args: Any, **kw: Any) -> str:
    """'ok', or the S3 error code: never the exception's text (a signature error could quote a request)."""
    try:
        result = fn(*args, **kw)
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            list(result)
        return "ok"
    except S3Error as exc:
        return str(exc.code)


def read(client: Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


def put(client: Minio, bucket: str, key: str, body: bytes = b"x") -> Any:
    return client.put_object(bucket, key, io.BytesIO(body), len(body))


def start(root: Path) -> SeaweedFS:
    """A running SeaweedFS in `root`; one that cannot be installed or started FAILS the test, never skips it."""
    store = SeaweedFS(root / "weed")
    try:
        store.ensure()
    except SeaweedFSError as exc:
        store.stop()
        pytest.fail(f"SEAWEEDFS UNAVAILABLE — the storage tests need a real object store: {exc}", pytrace=False)
    return store
