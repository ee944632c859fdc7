"""Per-agent storage identities through MinIO's admin API, with the minio SDK's `MinioAdmin` (no `mc` binary).

The same operations as backends/storage_iam.py, in MinIO's terms: a user *is* its access key (the compiled
`access_key`, the runtime name with `-` as `X`), its secret set by `add-user` (an upsert); the policy
`worker-<rt>` is a canned policy attached to that user only. The SDK signs every request and encrypts the
bodies that carry secrets (`add-user`, policy attach/detach) and decrypts `list-users` with the admin's secret.

Every failure is named by its request (`MinIO admin add-user for alice: HTTP 400 …`) and classified by
`gitops.providers.errors` (5xx, 429 and connection failures retried); no key reaches a message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from gitops.providers.errors import PermanentError, TransientError, call_with_retries, redact

POLICY_VERSION = "2012-10-17"


def access_key(rt: str) -> str:
    return rt.replace("-", "X")  # as compiled (gitops.compile.storage.storage_access_key)


def runtime_name(key: str) -> str:
    return key.replace("X", "-")  # runtime names are lowercase: X only ever stands for '-'


class MinioIdentities:
    """The admin calls the storage backend makes on MinIO."""

    def __init__(self, endpoint: str, access: str, secret: str, secure: bool,
                 sleep: Callable[[float], None] | None = None, attempts: int = 4) -> None:
        from minio import MinioAdmin
        from minio.credentials.providers import StaticProvider
        from urllib3 import PoolManager, Retry, Timeout

        host = endpoint.split("://", 1)[-1].rstrip("/")
        opened = threading.local()  # per thread: the executor applies several users at once

        class Pool(PoolManager):
            """Keeps what it answered, so each call can release its responses: the SDK leaves an error
            response of a streamed call (`list-users`) holding its socket until garbage collection."""

            def urlopen(self, *args: Any, **kw: Any) -> Any:
                response = super().urlopen(*args, **kw)
                if not hasattr(opened, "responses"):
                    opened.responses = []
                opened.responses.append(response)
                return response

        # No retries inside the SDK's pool: call_with_retries is the one retry path.
        pool = Pool(timeout=Timeout(connect=10, read=30), retries=Retry(total=0, redirect=0), maxsize=4)
        self._opened = opened
        self.admin = MinioAdmin(endpoint=host, credentials=StaticProvider(access, secret), secure=secure,
                                http_client=pool)
        self.sleep = sleep
        self.attempts = attempts
        self.requests = 0
        self.writes = 0

    def call(self, what: str, fn: Callable[[], str], missing_ok: bool = False) -> str | None:
        from minio.error import MinioAdminException

        label = f"MinIO admin {what}"

        write = not what.startswith(("list-", "user-info", "info-"))

        def once_inner() -> str | None:
            self.requests += 1
            self.writes += write
            try:
                return fn()
            finally:
                self._release()

        def once() -> str | None:
            try:
                return once_inner()
            except MinioAdminException as exc:
                status = int(exc._code) if str(exc._code).isdigit() else 0
                code = _error_code(exc._body)
                if missing_ok and (status == 404 or code in ("XMinioAdminNoSuchUser", "XMinioAdminNoSuchPolicy")):
                    return None
                message = redact(f"{label}: HTTP {status} {code}".rstrip())
                if status == 409:
                    raise TransientError(message) from None
                if status in (408, 429) or status >= 500:
                    raise TransientError(message) from None
                raise PermanentError(message) from None
            except (ValueError, json.JSONDecodeError) as exc:
                raise PermanentError(f"{label}: an answer that cannot be read ({type(exc).__name__})") from None
            except OSError as exc:
                raise TransientError(f"{label}: {type(exc).__name__}") from None
            except Exception as exc:
                if type(exc).__module__.startswith("urllib3"):
                    raise TransientError(f"{label}: {type(exc).__name__}") from None
                if type(exc).__module__.startswith(("Crypto", "argon2")):
                    raise PermanentError(f"{label}: the answer could not be decrypted") from None
                raise

        kw: dict[str, Any] = {"attempts": self.attempts}
        if self.sleep is not None:
            kw["sleep"] = self.sleep
        return call_with_retries(once, **kw)

    def _release(self) -> None:
        responses: list[Any] = getattr(self._opened, "responses", [])
        while responses:
            response = responses.pop()
            response.close()
            response.release_conn()

    def _json(self, what: str, text: str | None) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            raise PermanentError(f"MinIO admin {what}: the answer is not JSON ({len(text)} characters)") from None

    # Reading -------------------------------------------------------------------------------------------

    def users(self) -> set[str]:
        listed = self._json("list-users", self.call("list-users", self.admin.user_list))
        if not isinstance(listed, dict):
            raise PermanentError("MinIO admin list-users: the answer is not an object of users")
        return {runtime_name(str(key)) for key in listed}

    def keys(self, rt: str) -> list[str]:
        key = access_key(rt)
        info = self.call(f"user-info for {rt}", lambda: self.admin.user_info(key), missing_ok=True)
        return [] if info is None else [key]

    def policy(self, rt: str, name: str) -> list[dict[str, Any]] | None:
        from backends.storage_iam import normalise

        key = access_key(rt)
        info = self._json(f"user-info for {rt}",
                          self.call(f"user-info for {rt}", lambda: self.admin.user_info(key), missing_ok=True))
        if not isinstance(info, dict) or name not in str(info.get("policyName", "")).split(","):
            return None
        doc = self._json(f"info-canned-policy {name}",
                         self.call(f"info-canned-policy {name}", lambda: self.admin.policy_info(name),
                                   missing_ok=True))
        if not isinstance(doc, dict):
            return None
        body = doc.get("Policy", doc)  # newer servers wrap the document: {"PolicyName": …, "Policy": {…}}
        return normalise(body.get("Statement") if isinstance(body, dict) else None)

    # Writing -------------------------------------------------------------------------------------------

    def create_user(self, rt: str) -> None:
        """MinIO has no user without a secret: `put_key` creates it."""

    def put_key(self, rt: str, key: str, secret: str, replace: bool) -> None:
        self.call(f"add-user for {rt}", lambda: self.admin.user_add(key, secret))

    def put_policy(self, rt: str, name: str, statements: Any) -> None:
        document = {"Version": POLICY_VERSION, "Statement": statements}
        self.call(f"add-canned-policy {name}", lambda: self.admin.policy_add(name, policy=document))
        self._attach(rt, name)

    def _attach(self, rt: str, name: str) -> None:
        key = access_key(rt)
        try:
            self.call(f"attach {name} to {rt}", lambda: self.admin.attach_policy([name], user=key))
        except PermanentError as exc:
            if "XMinioAdminPolicyChangeAlreadyApplied" not in str(exc):
                raise

    def delete_user(self, rt: str) -> bool:
        key = access_key(rt)
        existed = self.call(f"remove-user {rt}", lambda: self.admin.user_remove(key), missing_ok=True) is not None
        name = f"worker-{rt}"
        self.call(f"remove-canned-policy {name}", lambda: self.admin.policy_remove(name), missing_ok=True)
        return existed

    def close(self) -> None:
        self.admin._http.clear()


def _error_code(body: str) -> str:
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return ""
    code = parsed.get("Code") if isinstance(parsed, dict) else None
    return str(code)[:64] if code else ""
