"""Per-agent storage identities through the AWS IAM API (SeaweedFS, Ceph RGW, AWS S3): users, keys, inline policies.

One agent is one IAM user `<rt>` holding one access key (id `<rt>`, the generated secret) and one inline policy
`worker-<rt>` — inline, so the policy lives and dies with its user and never re-attaches to someone else.
Requests are form-encoded `POST /` on the S3 endpoint, signed with SigV4 (service `iam`) as the store's admin,
over httpx; `gitops.providers.errors` classifies every failure and bounds the retries. A failure names the
request (`IAM CreateAccessKey for alice`); no message, log line or exception carries a key.

Observation: one `ListUsers`, then per user we hold `GetUserPolicy` and `ListAccessKeys` (IAM has no call that
returns a user's policy and keys together). The secret is never readable, so it is write-only; a new secret
(the consumed digest moved) replaces the key: delete, then create with the new value.

SeaweedFS: `DeleteUser` succeeds while the user still has keys and inline policies, and those policies then
silently re-attach to a new user of the same name — so a delete removes the policy and keys first.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from backends.storage_sigv4 import SigV4
from gitops.providers.errors import PermanentError, TransientError, call_with_retries, classify, raise_for_response

IAM_VERSION = "2010-05-08"
POLICY_VERSION = "2012-10-17"
_LISTS = ("Action", "Resource")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def normalise(statements: Any) -> list[dict[str, Any]]:
    """Statements as we write them: stores answer a one-element list as a plain string."""
    if isinstance(statements, dict):
        statements = [statements]
    out: list[dict[str, Any]] = []
    for st in statements if isinstance(statements, list) else []:
        if not isinstance(st, dict):
            continue
        st = dict(st)
        for key in _LISTS:
            if isinstance(st.get(key), str):
                st[key] = [st[key]]
        cond = st.get("Condition")
        if isinstance(cond, dict):
            st["Condition"] = {
                op: {k: [v] if isinstance(v, str) else v for k, v in body.items()} if isinstance(body, dict) else body
                for op, body in cond.items()
            }
        out.append(st)
    return out


class IAM:
    """The IAM calls the storage backend makes, as the store's admin."""

    def __init__(self, client: httpx.Client, endpoint: str, access_key: str, secret_key: str, region: str,
                 attempts: int = 5, sleep: Callable[[float], None] | None = None) -> None:
        self.http = client
        self.url = endpoint.rstrip("/") + "/"
        self.auth = SigV4(access_key, secret_key, region, "iam")
        self.attempts = attempts
        self.sleep = sleep
        self.requests = 0
        self.writes = 0

    def call(self, action: str, what: str, params: Mapping[str, str], missing_ok: bool = False,
             attempts: int = 0) -> ET.Element | None:
        """One IAM action; its parsed answer, or None when `missing_ok` and the entity does not exist."""
        label = f"IAM {action} {what}".strip()

        write = not action.startswith(("List", "Get"))

        def once() -> ET.Element | None:
            self.requests += 1
            self.writes += write
            try:
                response = self.http.post(self.url, data={"Action": action, "Version": IAM_VERSION, **params},
                                          auth=self.auth)
            except httpx.TransportError as exc:  # the store is down or cut the connection: worth retrying
                raise TransientError(f"{label}: {classify(exc).reason}") from None
            if missing_ok and response.status_code == 404:
                return None
            if response.status_code >= 400 and b"NoSuchEntity" in response.content and missing_ok:
                return None
            raise_for_response(response, label)
            try:
                return ET.fromstring(response.content)
            except ET.ParseError:
                raise PermanentError(f"{label}: the answer is not XML ({len(response.content)} bytes)") from None

        kw: dict[str, Any] = {"attempts": attempts or self.attempts}
        if self.sleep is not None:
            kw["sleep"] = self.sleep
        return call_with_retries(once, **kw)

    def close(self) -> None:
        self.http.close()

    # Reading -------------------------------------------------------------------------------------------

    def users(self) -> set[str]:
        names: set[str] = set()
        marker = ""
        while True:
            root = self.call("ListUsers", "", {"Marker": marker} if marker else {})
            assert root is not None
            for el in root.iter():
                if _local(el.tag) == "UserName" and el.text:
                    names.add(el.text)
            truncated = next((el.text for el in root.iter() if _local(el.tag) == "IsTruncated"), "false")
            marker = next((el.text or "" for el in root.iter() if _local(el.tag) == "Marker"), "")
            if truncated != "true" or not marker:
                return names

    def keys(self, user: str) -> list[str]:
        root = self.call("ListAccessKeys", f"for {user}", {"UserName": user}, missing_ok=True)
        if root is None:
            return []
        return [el.text for el in root.iter() if _local(el.tag) == "AccessKeyId" and el.text]

    def policy(self, user: str, name: str) -> list[dict[str, Any]] | None:
        root = self.call("GetUserPolicy", f"{name} of {user}", {"UserName": user, "PolicyName": name},
                         missing_ok=True)
        if root is None:
            return None
        text = next((el.text for el in root.iter() if _local(el.tag) == "PolicyDocument"), None)
        try:
            doc = json.loads(text or "")
        except json.JSONDecodeError:
            raise PermanentError(f"IAM GetUserPolicy {name} of {user}: the policy document is not JSON") from None
        return normalise(doc.get("Statement") if isinstance(doc, dict) else None)

    def policies(self, user: str) -> list[str]:
        root = self.call("ListUserPolicies", f"for {user}", {"UserName": user}, missing_ok=True)
        if root is None:
            return []
        return [el.text for el in root.iter() if _local(el.tag) == "member" and el.text]

    # Writing -------------------------------------------------------------------------------------------

    def create_user(self, user: str) -> None:
        try:
            self.call("CreateUser", user, {"UserName": user}, attempts=1)
        except (PermanentError, TransientError) as exc:  # 409 EntityAlreadyExists: a pass cut short made it
            if "EntityAlreadyExists" not in str(exc):
                raise

    def put_key(self, user: str, access_key: str, secret_key: str, replace: bool) -> None:
        if replace or access_key in self.keys(user):
            self.call("DeleteAccessKey", f"{access_key} of {user}", {"UserName": user, "AccessKeyId": access_key},
                      missing_ok=True)
        self.call("CreateAccessKey", f"for {user}",
                  {"UserName": user, "AccessKeyId": access_key, "SecretAccessKey": secret_key})

    def put_policy(self, user: str, name: str, statements: Any) -> None:
        document = json.dumps({"Version": POLICY_VERSION, "Statement": statements}, separators=(",", ":"))
        self.call("PutUserPolicy", f"{name} for {user}",
                  {"UserName": user, "PolicyName": name, "PolicyDocument": document})

    def delete_user(self, user: str) -> bool:
        """Policies and keys first (see the module docstring), then the user; whether it existed."""
        for name in self.policies(user):
            self.call("DeleteUserPolicy", f"{name} of {user}", {"UserName": user, "PolicyName": name},
                      missing_ok=True)
        for key in self.keys(user):
            self.call("DeleteAccessKey", f"of {user}", {"UserName": user, "AccessKeyId": key}, missing_ok=True)
        return self.call("DeleteUser", user, {"UserName": user}, missing_ok=True) is not None
