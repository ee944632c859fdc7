"""The storage backend: the bucket, agents' files and areas on the S3 API (minio SDK), identities by IAM or MinIO admin.

Provider `storage`, types as compiled by gitops/compile/storage.py: `bucket`, `object` (`storage/object/<key>`),
`area` (`storage/area/agents/<rt>`: everything under `agents/<rt>/`) and `user` (an agent's identity and its
inline policy). docs/storage.md is the operator's view. In short:

- **Bucket**: created when missing, never deleted (a delete leaves it and says so).
- **Files** are written as `gitops.objects.file_text(spec)` after resolving their `secret://` references, with
  two metadata entries: our instance label and the object's hash. An existing key without our label is
  someone else's and is refused. Observation is one listing of the bucket, then one HEAD per file we hold (S3
  listings carry no user metadata); a file is written only when its recorded hash differs — a rotated
  credential changes the hash of every file carrying it.
- **Areas**: applying one writes nothing (the files are the content); deleting one *archives* it — every key
  under `agents/<rt>/` (ours and the agent's own) copied to `archive/<UTC timestamp>/agents/<rt>/`, each copy
  checked (size and ETag), and only then the originals removed. `purge: true` in the spec (from
  `prune.purge_storage`) removes without archiving.
- **Users**: `storage.identity` chooses `aws-iam` (backends/storage_iam.py) or `minio-admin`
  (backends/storage_minio.py). The secret key is write-only.

Credentials are the store's admin key pair (`storage.access_key_env|file`, `storage.secret_key_env|file`).
No key reaches a message, a log line or an exception.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from gitops.objects import ManagedObject, Provider, file_text
from gitops.providers.errors import PermanentError, TransientError, call_with_retries
from gitops.providers.protocol import ApplyResult, BackendContext, Observed, Outcome, Resolve, Scope, TypeTraits
from gitops.settings.model import StorageSettings

__all__ = ["StorageBackend", "StorageError", "read_credential"]

BUCKET, OBJECT, AREA, USER = "bucket", "object", "area", "user"
INSTANCE_META = "hiclaw-gitops-instance"
HASH_META = "hiclaw-gitops-hash"
ARCHIVE = "archive"
_WRITES = frozenset({"PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CreateBucket"})
_TRANSIENT_CODES = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Busy"})


class StorageError(PermanentError):
    """The storage backend cannot start: a missing setting or credential (the message says which)."""


def read_credential(settings: StorageSettings, which: str) -> str:
    """The admin access or secret key from its environment variable or file; StorageError when neither."""
    env = getattr(settings, f"{which}_key_env")
    path = getattr(settings, f"{which}_key_file")
    if env:
        value = os.environ.get(env, "").strip()
        if value:
            return value
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StorageError(f"storage.{which}_key_file: cannot read {path} ({exc.strerror})") from None
        if value:
            return value
    raise StorageError(f"storage: no {which} key (set storage.{which}_key_env or storage.{which}_key_file)")


def _meta(headers: Mapping[str, str], name: str) -> str:
    wanted = f"x-amz-meta-{name}"
    return next((str(v) for k, v in headers.items() if k.lower() == wanted), "")


class StorageBackend:
    """One bucket on one S3 endpoint, and the identities of its agents (see the module docstring)."""

    provider = Provider.STORAGE
    types: tuple[str, ...] = (BUCKET, OBJECT, AREA, USER)
    traits: Mapping[str, TypeTraits] = {
        USER: TypeTraits(write_only=frozenset({"secret_key"}), replace_on=frozenset({"access_key"})),
        AREA: TypeTraits(write_only=frozenset({"purge"})),
    }

    def __init__(self, ctx: BackendContext | StorageSettings | None = None, *,
                 sleep: Callable[[float], None] | None = None) -> None:
        settings = ctx.settings if isinstance(ctx, BackendContext) else ctx
        self.settings = settings if isinstance(settings, StorageSettings) else StorageSettings()
        self.ctx = ctx if isinstance(ctx, BackendContext) else BackendContext(settings=self.settings)
        self.instance = self.ctx.instance
        if not self.settings.endpoint:
            raise StorageError("storage.endpoint is not set: the storage backend needs the S3 endpoint (host:port)")
        self.sleep = sleep
        self._lock = threading.Lock()
        self.requests = 0  # S3 requests made (the benchmark reads them); identity ones are counted by their client
        self.writes = 0
        self._s3: Any = None
        self._identity: Any = None
        # What a HEAD found per key, by the ETag the listing showed: key -> (etag, ours or None for someone else's).
        # A listing carries the ETag but not our labels; an unchanged ETag means unchanged bytes, so the HEAD is
        # not repeated. Our own writes and deletes forget their keys.
        self._heads: dict[str, tuple[str, Observed | None]] = {}

    # Clients (built on first use: constructing a backend contacts nothing) ------------------------------

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            from minio import Minio
            from urllib3 import PoolManager, Retry, Timeout

            endpoint = self.settings.endpoint.split("://", 1)[-1].rstrip("/")
            # No retries inside the SDK's pool: call_with_retries is the one retry path.
            pool = PoolManager(timeout=Timeout(connect=10, read=60), retries=Retry(total=0, redirect=0),
                               maxsize=max(4, self.settings.concurrency))
            self._s3 = Minio(endpoint, read_credential(self.settings, "access"),
                             read_credential(self.settings, "secret"), secure=self.settings.secure,
                             region=self.settings.region, http_client=pool)
        return self._s3

    @property
    def identity(self) -> Any:
        if self._identity is None:
            kind = self.settings.identity_api
            access, secret = read_credential(self.settings, "access"), read_credential(self.settings, "secret")
            scheme = "https" if self.settings.secure else "http"
            endpoint = self.settings.endpoint if "://" in self.settings.endpoint else (
                f"{scheme}://{self.settings.endpoint}")
            if kind == "aws-iam":
                from backends.storage_iam import IAM

                self._identity = IAM(self.ctx.client(timeout=30.0), endpoint, access, secret, self.settings.region,
                                     sleep=self.sleep)
            elif kind == "minio-admin":
                from backends.storage_minio import MinioIdentities

                self._identity = MinioIdentities(endpoint, access, secret, self.settings.secure, sleep=self.sleep)
            else:
                raise PermanentError("storage: users need an identity API (storage.identity: aws-iam or minio-admin)")
        return self._identity

    @property
    def identity_requests(self) -> int:
        return int(getattr(self._identity, "requests", 0))

    @property
    def identity_writes(self) -> int:
        return int(getattr(self._identity, "writes", 0))

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """One S3 call with the shared retry rules; every failure named by its request, never a traceback."""
        from minio.error import InvalidResponseError, S3Error, ServerError

        write = what.split(" ", 1)[0] in _WRITES

        def once() -> Any:
            with self._lock:
                self.requests += 1
                self.writes += write
            try:
                return fn()
            except S3Error as exc:
                message = f"S3 {what}: {exc.code or 'error'}"
                if exc.code in _TRANSIENT_CODES:
                    raise TransientError(message) from None
                raise PermanentError(message) from None
            except ServerError as exc:
                raise TransientError(f"S3 {what}: HTTP {exc.status_code}") from None
            except InvalidResponseError as exc:
                raise PermanentError(f"S3 {what}: an answer that is not S3 (HTTP {exc._code})") from None
            except (OSError, ValueError) as exc:
                kind = type(exc).__name__
                if isinstance(exc, ValueError):
                    raise PermanentError(f"S3 {what}: {kind}") from None
                raise TransientError(f"S3 {what}: {kind}") from None
            except Exception as exc:  # urllib3's own errors (MaxRetryError, ProtocolError...)
                if type(exc).__module__.startswith("urllib3"):
                    raise TransientError(f"S3 {what}: {type(exc).__name__}") from None
                raise

        kw: dict[str, Any] = {"attempts": 4}
        if self.sleep is not None:
            kw["sleep"] = self.sleep
        return call_with_retries(once, **kw)

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    # Observe ------------------------------------------------------------------------------------------------

    def observe(self, scope: Scope) -> dict[str, Observed]:
        out: dict[str, Observed] = {}
        files = OBJECT in scope.names or AREA in scope.names
        if BUCKET in scope.names or files:
            for name in scope.names.get(BUCKET, frozenset()) | {self.bucket}:
                if self._call(f"HeadBucket {name}", partial(self.s3.bucket_exists, name)):
                    out[f"storage/bucket/{name}"] = Observed(f"storage/bucket/{name}", {"bucket": name})
        if files and f"storage/bucket/{self.bucket}" in out:
            listed = self._list("")
            wanted = scope.names.get(OBJECT, frozenset())
            if OBJECT in scope.names and not wanted and not scope.exact:
                # "Everything of ours" (no names: what a pass never asks, a review does): listings carry no
                # metadata, so each listed key is asked for its label — archives excepted, they are history.
                wanted = frozenset(k for k in listed if not k.startswith(ARCHIVE + "/"))
            out.update(self._observe_objects(listed, wanted))
            areas = {key.split("/", 2)[1] for key in listed if key.startswith("agents/") and key.count("/") >= 2}
            for rt in areas:
                key = f"storage/area/agents/{rt}"
                out[key] = Observed(key, {"bucket": self.bucket, "prefix": f"agents/{rt}/"})
        if USER in scope.names and self.settings.identity_api:
            out.update(self._observe_users(scope.names[USER]))
        if scope.exact:
            out = {k: v for k, v in out.items() if scope.wants(k)}
        return dict(sorted(out.items()))

    def _list(self, prefix: str) -> dict[str, tuple[str, int]]:
        """Key -> (etag, size) under `prefix`, one paged listing."""
        def listing() -> dict[str, tuple[str, int]]:
            return {
                str(o.object_name): (str(o.etag or "").strip('"'), int(o.size or 0))
                for o in self.s3.list_objects(self.bucket, prefix=prefix, recursive=True)
            }
        result: dict[str, tuple[str, int]] = self._call(f"ListObjectsV2 {self.bucket}/{prefix}", listing)
        return result

    def _observe_objects(self, listed: Mapping[str, Any], wanted: frozenset[str]) -> dict[str, Observed]:
        keys = sorted(k for k in wanted if k in listed)
        with self._lock:
            for key in [k for k in self._heads if k not in listed]:
                del self._heads[key]  # gone from the bucket
            known = {k: self._heads[k][1] for k in keys if k in self._heads and self._heads[k][0] == listed[k][0]}

        def head(key: str) -> tuple[str, str, Observed | None]:
            stat = self._call(f"HeadObject {self.bucket}/{key}", lambda: self.s3.stat_object(self.bucket, key))
            headers = stat.metadata or {}
            etag = str(stat.etag or "").strip('"')
            if _meta(headers, INSTANCE_META) != self.instance:
                return key, etag, None  # someone else's file: never ours to observe (an apply refuses it)
            spec = {"bucket": self.bucket, "key": key, "content_type": str(stat.content_type or "")}
            return key, etag, Observed(f"storage/object/{key}", spec, _meta(headers, HASH_META) or None,
                                       fingerprint=etag)

        out = {f"storage/object/{k}": seen for k, seen in known.items() if seen is not None}
        with ThreadPoolExecutor(max_workers=max(1, min(self.settings.concurrency, 16))) as pool:
            for key, etag, seen in pool.map(head, [k for k in keys if k not in known]):
                with self._lock:
                    self._heads[key] = (etag, seen)
                if seen is not None:
                    out[seen.key] = seen
        return out

    def _forget(self, *keys: str, prefix: str = "") -> None:
        """What a HEAD found no longer holds: we wrote or removed these keys (or everything under `prefix`)."""
        with self._lock:
            for key in keys:
                self._heads.pop(key, None)
            if prefix:
                for key in [k for k in self._heads if k.startswith(prefix)]:
                    del self._heads[key]

    def _observe_users(self, wanted: frozenset[str]) -> dict[str, Observed]:
        ident = self.identity
        present = ident.users()
        out: dict[str, Observed] = {}
        for rt in sorted(wanted & present):
            policy = f"worker-{rt}"
            statements = ident.policy(rt, policy)
            keys = ident.keys(rt)
            access = rt.replace("-", "X")  # as compiled (gitops.compile.storage.storage_access_key)
            spec: dict[str, Any] = {"access_key": access if access in keys else ""}
            if statements is not None:
                spec.update(policy=policy, statements=statements)
            out[f"storage/user/{rt}"] = Observed(f"storage/user/{rt}", spec)
        return out

    # Apply --------------------------------------------------------------------------------------------------

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        if action not in ("create", "update", "replace"):
            raise PermanentError(f"{obj.key}: unknown action {action!r}")
        if obj.provider is not Provider.STORAGE or obj.type not in self.types:
            raise PermanentError(f"{obj.key} is not served by the storage backend ({', '.join(self.types)})")
        if obj.type == BUCKET:
            return self._apply_bucket(str(obj.spec.get("bucket") or self.bucket))
        if obj.type == OBJECT:
            return self._apply_object(obj, resolve)
        if obj.type == AREA:
            # The area is its files (written by their own objects): only its deletion does something here.
            return ApplyResult(Outcome.CREATED if action == "create" else Outcome.UNCHANGED)
        return self._apply_user(obj, action, before, resolve)

    def _apply_bucket(self, name: str) -> ApplyResult:
        if self._call(f"HeadBucket {name}", lambda: self.s3.bucket_exists(name)):
            return ApplyResult(Outcome.UNCHANGED)
        try:
            self._call(f"CreateBucket {name}", lambda: self.s3.make_bucket(name))
        except PermanentError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                raise
        return ApplyResult(Outcome.CREATED)

    def _apply_object(self, obj: ManagedObject, resolve: Resolve) -> ApplyResult:
        bucket, key = str(obj.spec.get("bucket") or self.bucket), str(obj.spec["key"])
        from minio.error import S3Error

        def stat() -> Any:
            try:
                return self.s3.stat_object(bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return None
                raise

        current = self._call(f"HeadObject {bucket}/{key}", stat)
        if current is not None:
            headers = current.metadata or {}
            if _meta(headers, INSTANCE_META) != self.instance:
                raise PermanentError(f"{obj.key}: {bucket}/{key} exists and was not written by {self.instance}; "
                                     "it is left as it is")
            if _meta(headers, HASH_META) == obj.hash:
                return ApplyResult(Outcome.UNCHANGED, fingerprint=str(current.etag or "").strip('"'))
        body = file_text(resolve(obj.spec)).encode("utf-8")
        meta = {INSTANCE_META: self.instance, HASH_META: obj.hash}
        self._forget(key)
        content_type = str(obj.spec.get("content_type") or "application/octet-stream")
        result = self._call(f"PutObject {bucket}/{key}", lambda: self.s3.put_object(
            bucket, key, io.BytesIO(body), len(body), content_type=content_type, metadata=meta))
        etag = str(getattr(result, "etag", "") or "").strip('"')
        return ApplyResult(Outcome.CONFIGURED if current is not None else Outcome.CREATED, fingerprint=etag)

    def _apply_user(self, obj: ManagedObject, action: str, before: Observed | None,
                    resolve: Resolve) -> ApplyResult:
        ident = self.identity
        rt = obj.name
        spec = resolve(obj.spec)
        existed = before is not None or action != "create"  # a create that finds one (a cut-short pass) adopts it
        ident.create_user(rt)
        # The secret is write-only: every apply of a user sets it, replacing the key (a rotation, a lost key).
        # The key before the policy: MinIO has no user until it has a key, and a key without a policy can do nothing.
        ident.put_key(rt, str(spec["access_key"]), str(spec["secret_key"]), replace=existed)
        ident.put_policy(rt, str(spec["policy"]), spec["statements"])
        return ApplyResult(Outcome.CONFIGURED if existed else Outcome.CREATED)

    # Delete -------------------------------------------------------------------------------------------------

    def delete(self, obj: ManagedObject) -> Outcome:
        if obj.type == BUCKET:
            self.ctx.log.info("%s: a bucket is never pruned; it is left in place", obj.key)
            return Outcome.UNCHANGED
        if obj.type == OBJECT:
            return self._delete_object(obj)
        if obj.type == AREA:
            return self._delete_area(obj)
        if obj.type == USER:
            return Outcome.DELETED if self.identity.delete_user(obj.name) else Outcome.UNCHANGED
        raise PermanentError(f"{obj.key} is not served by the storage backend ({', '.join(self.types)})")

    def _delete_object(self, obj: ManagedObject) -> Outcome:
        bucket, key = str(obj.spec.get("bucket") or self.bucket), str(obj.spec["key"])
        from minio.error import S3Error

        def stat() -> Any:
            try:
                return self.s3.stat_object(bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket"):
                    return None
                raise

        current = self._call(f"HeadObject {bucket}/{key}", stat)
        if current is None:
            return Outcome.UNCHANGED
        if _meta(current.metadata or {}, INSTANCE_META) != self.instance:
            return Outcome.UNCHANGED  # an agent's own file under a key we once held: never ours to delete
        self._forget(key)
        self._call(f"DeleteObject {bucket}/{key}", lambda: self.s3.remove_object(bucket, key))
        return Outcome.DELETED

    def _delete_area(self, obj: ManagedObject, now: datetime | None = None) -> Outcome:
        prefix = str(obj.spec.get("prefix") or obj.name)
        if not prefix.startswith("agents/") or not prefix.endswith("/") or prefix.count("/") != 2:
            raise PermanentError(f"{obj.key}: {prefix!r} is not an agent area (agents/<name>/)")
        listed = self._list(prefix)
        if not listed:
            return Outcome.UNCHANGED
        if not obj.spec.get("purge"):
            stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
            self.archive(prefix, f"{ARCHIVE}/{stamp}/{prefix}", listed)
        self._remove(prefix, list(listed))
        return Outcome.DELETED

    def archive(self, prefix: str, target: str, listed: Mapping[str, tuple[str, int]]) -> None:
        """Copy every key under `prefix` to `target`, then check each copy; PermanentError if one differs."""
        from minio.commonconfig import CopySource

        for key in sorted(listed):
            dest = target + key[len(prefix):]
            self._call(f"CopyObject {self.bucket}/{key} to {dest}",
                       partial(self.s3.copy_object, self.bucket, dest, CopySource(self.bucket, key)))
        copies = self._list(target)
        for key, (etag, size) in listed.items():
            dest = target + key[len(prefix):]
            got = copies.get(dest)
            if got is None or got[1] != size or (etag and got[0] and got[0] != etag):
                raise PermanentError(f"archive of {prefix}: the copy {dest} does not match its original; "
                                     "nothing was deleted")

    def _remove(self, prefix: str, keys: list[str]) -> None:
        from minio.deleteobjects import DeleteObject

        self._forget(*keys)
        def remove() -> None:
            errors = list(self.s3.remove_objects(self.bucket, [DeleteObject(k) for k in keys]))
            if errors:
                raise TransientError(f"S3 DeleteObjects {self.bucket}/{prefix}: {len(errors)} keys not deleted")

        self._call(f"DeleteObjects {self.bucket}/{prefix}", remove)

    def close(self) -> None:
        ident = self._identity
        if ident is not None and hasattr(ident, "close"):
            ident.close()
        if self._s3 is not None:
            self._s3._http.clear()  # the SDK's urllib3 pool: its sockets, now rather than at collection
