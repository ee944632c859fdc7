"""A FAKE of MinIO's admin API — not MinIO. A contract fake for the `minio-admin` identity tests.

No MinIO server can be installed here (none on PyPI, Debian or npm; the project went source-only), so this
reproduces the recorded behaviour of `/minio/admin/v3/…` as the minio SDK's `MinioAdmin` speaks it: bodies that
carry secrets (`add-user`, policy attach/detach) encrypted with the admin's secret key by `minio.crypto`
(argon2id + AES-GCM), `list-users` and the attach answer encrypted the same way, `add-user` an upsert, errors as
JSON `{"Code": "XMinioAdmin…", "Message": …}` (404 for a missing user or policy, 400 for a policy already
attached), and a request not signed by the admin's access key refused with 403. Faults (a status for the next
requests, a malformed body) are injected by tests. Loopback only.
"""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from minio.crypto import DecryptReader, encrypt

PREFIX = "/minio/admin/v3/"


class _Body:
    """What minio.crypto's reader expects of an HTTP response."""

    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._io.read(n)

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def decrypt(data: bytes, secret: str) -> bytes:
    with DecryptReader(_Body(data), secret.encode()) as reader:  # type: ignore[arg-type]
        return b"".join(reader.stream())


class FakeMinioAdmin:
    """The server's state (users, canned policies) and its HTTP endpoint on 127.0.0.1."""

    def __init__(self, access: str, secret: str) -> None:
        self.access, self.secret = access, secret
        self.users: dict[str, dict[str, Any]] = {}  # access key -> {"secretKey", "status", "policies"}
        self.policies: dict[str, dict[str, Any]] = {}
        self.faults: list[tuple[int, bytes]] = []  # (status, body) answered to the next requests, in order
        self.requests: list[str] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

            do_PUT = do_POST = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # Protocol ---------------------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        command = url.path.removeprefix(PREFIX)
        with self.lock:
            self.requests.append(f"{h.command} {command}")
            if self.faults:
                status, data = self.faults.pop(0)
                return self.send(h, status, data)
            if f"Credential={self.access}/" not in (h.headers.get("Authorization") or ""):
                return self.error(h, 403, "InvalidAccessKeyId", "The access key ID you provided does not exist")
            try:
                status, answer = self.route(h.command, command, query, body)
            except ValueError:
                return self.error(h, 400, "XMinioAdminConfigBadJSON", "the request body could not be read")
        self.send(h, status, answer)

    def route(self, method: str, command: str, q: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if (method, command) == ("PUT", "add-user"):
            doc = json.loads(decrypt(body, self.secret))
            user = self.users.setdefault(q["accessKey"], {"policies": []})
            user.update(secretKey=doc["secretKey"], status=doc.get("status", "enabled"))
            return 200, b""
        if (method, command) == ("GET", "list-users"):
            listed = {k: {"status": u["status"], "policyName": ",".join(u["policies"])} for k, u in self.users.items()}
            return 200, encrypt(json.dumps(listed).encode(), self.secret)
        if (method, command) == ("GET", "user-info"):
            found = self.users.get(q.get("accessKey", ""))
            if found is None:
                return self.err(404, "XMinioAdminNoSuchUser", "The specified user does not exist")
            return 200, json.dumps({"status": found["status"], "policyName": ",".join(found["policies"])}).encode()
        if (method, command) == ("DELETE", "remove-user"):
            if self.users.pop(q.get("accessKey", ""), None) is None:
                return self.err(404, "XMinioAdminNoSuchUser", "The specified user does not exist")
            return 200, b""
        if (method, command) == ("PUT", "add-canned-policy"):
            self.policies[q["name"]] = json.loads(body)
            return 200, b""
        if (method, command) == ("GET", "info-canned-policy"):
            if q.get("name") not in self.policies:
                return self.err(404, "XMinioAdminNoSuchPolicy", "The canned policy does not exist")
            return 200, json.dumps(self.policies[q["name"]]).encode()
        if (method, command) == ("DELETE", "remove-canned-policy"):
            if self.policies.pop(q.get("name", ""), None) is None:
                return self.err(404, "XMinioAdminNoSuchPolicy", "The canned policy does not exist")
            return 200, b""
        if method == "POST" and command in ("idp/builtin/policy/attach", "idp/builtin/policy/detach"):
            doc = json.loads(decrypt(body, self.secret))
            member = self.users.get(doc.get("user", ""))
            if member is None:
                return self.err(404, "XMinioAdminNoSuchUser", "The specified user does not exist")
            user = member
            wanted = [p for p in doc["policies"] if p in self.policies]
            if len(wanted) != len(doc["policies"]):
                return self.err(404, "XMinioAdminNoSuchPolicy", "The canned policy does not exist")
            attach = command.endswith("attach")
            changed = [p for p in wanted if (p not in user["policies"]) == attach]
            if not changed:
                return self.err(400, "XMinioAdminPolicyChangeAlreadyApplied",
                                "The specified policy change is already in effect.")
            user["policies"] = ([*user["policies"], *changed] if attach
                                else [p for p in user["policies"] if p not in changed])
            key = "policiesAttached" if attach else "policiesDetached"
            return 200, encrypt(json.dumps({key: changed, "updatedAt": "2026-01-01T00:00:00Z"}).encode(), self.secret)
        return self.err(400, "XMinioAdminInvalidRequest", f"{method} {command} is not served by this fake")

    @staticmethod
    def err(status: int, code: str, message: str) -> tuple[int, bytes]:
        return status, json.dumps({"Code": code, "Message": message}).encode()

    def error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self.send(h, status, self.err(status, code, message)[1])

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
