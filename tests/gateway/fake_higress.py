"""A FAKE Higress console — a contract fake for tests, not Higress. It listens on 127.0.0.1 only.

It reproduces the console's recorded behaviour (higress-group/higress-console, backend/console, as written up in
the project's dependency notes), nothing more:

- HTTP Basic auth on every request (401 with a JSON failure otherwise);
- GET answers `{"success": true, "message": null, "data": …}` (lists add `total`, `pageNum`, `pageSize`), and a
  missing item is **404 with an empty body**;
- POST answers **201 with the raw object** (no envelope); PUT 200 with the raw object; DELETE **204**;
- failures are `{"success": false, "message": "<ExceptionClass>: …"}`: 400 `ValidationException`, 409
  `ResourceConflictException` (a PUT whose `version` is not the record's current one, a POST of a name that
  exists), **502 `NotFoundException`** (the SDK's not-found: a PUT or DELETE of a missing item, MCP grants on a
  missing server), 500 otherwise;
- consumers: POST is an upsert; DELETE is refused while an AI route or MCP server still allows the consumer;
- AI routes, domains, service sources and routes carry a `version` that every write moves;
- MCP servers: `PUT /v1/mcpServer/consumers` adds consumers, `DELETE` with the same body removes them, no versions.

Tests steer it: `fail(method, path_prefix, status, times, retry_after=None, body=...)` queues faults (429, 5xx,
anything; `LOST`: the request is carried out and the connection dropped before the answer), `before_write` is
called inside each write before its version check (to play a concurrent editor), and `requests` records
`(method, path)` of every request that passed authentication.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, Any, dict[str, str]]  # status, body (None: empty), extra headers

COLLECTIONS = {
    "/v1/consumers": "consumers",
    "/v1/ai/routes": "ai_routes",
    "/v1/mcpServer": "mcp_servers",
    "/v1/domains": "domains",
    "/v1/service-sources": "sources",
    "/v1/routes": "routes",
}
VERSIONED = {"ai_routes", "domains", "sources", "routes"}
LOST = -1  # a fault status: carry the request out, then drop the connection without answering


@dataclass
class Fault:
    method: str
    prefix: str
    status: int
    times: int
    retry_after: str | None
    body: Any


class FakeHigress:
    """The fake console's state and behaviour; `start()` serves it on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, username: str = "admin", password: str = "fake-console-pw") -> None:
        self.username = username
        self.password = password
        self.lock = threading.RLock()
        self.data: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in COLLECTIONS.values()}
        self.version = 0
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.conflicts = 0  # 409s answered for a stale version
        self.before_write: Callable[[str, str], None] | None = None
        self._server: ThreadingHTTPServer | None = None

    # Serving --------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHigress:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = fake.handle(self.command, self.path, self.headers.get("Authorization"), raw)
                if status == LOST:  # the request was carried out; its answer never arrives
                    self.close_connection = True
                    return
                payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-higress", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # Steering -------------------------------------------------------------------------------------------

    def fail(self, method: str, prefix: str, status: int, times: int = 1, retry_after: str | None = None,
             body: Any = None) -> None:
        with self.lock:
            self.faults.append(Fault(method, prefix, status, times, retry_after, body))

    def writes(self) -> int:
        return sum(1 for m, _ in self.requests if m != "GET")

    # The console ----------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, authorization: str | None, raw: bytes) -> Answer:
        if not self._authorised(authorization):
            return 401, _failure("AuthException: not logged in"), {}
        split = urlsplit(target)
        path = unquote(split.path)
        drop = False
        with self.lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.times > 0 and fault.method in (method, "*") and path.startswith(fault.prefix):
                    fault.times -= 1
                    if fault.status == LOST:
                        drop = True
                        break
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                    body = fault.body if fault.body is not None else _failure(f"InternalError: injected {fault.status}")
                    return fault.status, body, headers
        answer = self._dispatch(method, path, split.query, raw)
        return (LOST, None, {}) if drop else answer

    def _dispatch(self, method: str, path: str, query: str, raw: bytes) -> Answer:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, _failure("ValidationException: the body is not JSON"), {}
        if path == "/v1/mcpServer/consumers":
            return self._mcp_consumers(method, body, parse_qs(query))
        for prefix, collection in COLLECTIONS.items():
            if path == prefix:
                return self._collection(method, collection, body)
            if path.startswith(prefix + "/") and "/" not in path[len(prefix) + 1:]:
                return self._item(method, collection, path[len(prefix) + 1:], body)
        return 404, None, {}

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            parts = base64.b64decode(header[6:]).decode().split(":")
        except ValueError:
            return False
        return len(parts) == 2 and parts == [self.username, self.password]

    def _collection(self, method: str, collection: str, body: Any) -> Answer:
        with self.lock:
            items = self.data[collection]
            if method == "GET":
                listed = [json.loads(json.dumps(v)) for _, v in sorted(items.items())]
                return 200, {"success": True, "message": None, "data": listed, "total": len(listed),
                             "pageNum": 1, "pageSize": len(listed)}, {}
            if method == "POST" or (method == "PUT" and collection == "mcp_servers"):  # MCP: PUT upserts
                if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
                    return 400, _failure("ValidationException: name is required"), {}
                name = body["name"]
                if name in items and collection not in ("consumers", "mcp_servers"):
                    return 409, _failure(f"ResourceConflictException: {collection} {name} already exists"), {}
                self._written(method, collection, name)
                stored = dict(body)
                if collection in VERSIONED:
                    stored["version"] = self._next_version()
                items[name] = stored
                return (201 if method == "POST" else 200), stored, {}
        return 405, _failure("MethodNotSupported"), {}

    def _item(self, method: str, collection: str, name: str, body: Any) -> Answer:
        with self.lock:
            items = self.data[collection]
            current = items.get(name)
            if method == "GET":
                if current is None:
                    return 404, None, {}
                return 200, {"success": True, "message": None, "data": json.loads(json.dumps(current))}, {}
            if current is None:
                return 502, _failure(f"NotFoundException: {collection} {name} not found"), {}
            if method == "PUT":
                if not isinstance(body, dict) or body.get("name", name) != name:
                    return 400, _failure("ValidationException: the body's name is not the path's"), {}
                self._written(method, collection, name)
                current = items[name]  # a concurrent editor may have moved it
                if collection in VERSIONED:
                    if str(body.get("version")) != str(current.get("version")):
                        self.conflicts += 1
                        return 409, _failure(f"ResourceConflictException: {collection} {name} was changed by "
                                             "someone else (version mismatch)"), {}
                    body = {**body, "version": self._next_version()}
                items[name] = dict(body)
                return 200, items[name], {}
            if method == "DELETE":
                if collection == "consumers" and self._in_use(name):
                    return 400, _failure(f"ValidationException: consumer {name} is still in use"), {}
                del items[name]
                return 204, None, {}
        return 405, _failure("MethodNotSupported"), {}

    def _mcp_consumers(self, method: str, body: Any, query: dict[str, list[str]]) -> Answer:
        with self.lock:
            if method == "GET":
                server = self.data["mcp_servers"].get((query.get("mcpServerName") or [""])[0])
                if server is None:
                    return 502, _failure("NotFoundException: MCP server not found"), {}
                names = server.get("consumerAuthInfo", {}).get("allowedConsumers") or []
                return 200, {"success": True, "message": None,
                             "data": [{"mcpServerName": server["name"], "consumerName": n} for n in names]}, {}
            if not isinstance(body, dict) or not isinstance(body.get("consumers"), list):
                return 400, _failure("ValidationException: mcpServerName and consumers are required"), {}
            server = self.data["mcp_servers"].get(str(body.get("mcpServerName")))
            if server is None:
                return 502, _failure(f"NotFoundException: MCP server {body.get('mcpServerName')} not found"), {}
            self._written(method, "mcp_servers", server["name"])
            auth = server.setdefault("consumerAuthInfo", {"type": "key-auth", "enable": True, "allowedConsumers": []})
            allowed: list[str] = auth.setdefault("allowedConsumers", [])
            if method == "PUT":
                allowed.extend(c for c in body["consumers"] if c not in allowed)
                return 204, None, {}
            if method == "DELETE":
                auth["allowedConsumers"] = [c for c in allowed if c not in body["consumers"]]
                return 204, None, {}
        return 405, _failure("MethodNotSupported"), {}

    def _written(self, method: str, collection: str, name: str) -> None:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None  # the hook may write itself
            try:
                hook(collection, name)
            finally:
                self.before_write = hook

    def _next_version(self) -> str:
        self.version += 1
        return str(self.version)

    def _in_use(self, consumer: str) -> bool:
        routes = self.data["ai_routes"].values()
        servers = self.data["mcp_servers"].values()
        return any(consumer in ((r.get("authConfig") or {}).get("allowedConsumers") or []) for r in routes) or any(
            consumer in ((s.get("consumerAuthInfo") or {}).get("allowedConsumers") or []) for s in servers)

    # Direct edits (what someone else does by hand) ------------------------------------------------------

    def edit_route(self, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Someone else edits an AI route (its version moves)."""
        with self.lock:
            route = self.data["ai_routes"][name]
            change(route)
            route["version"] = self._next_version()


def _failure(message: str) -> dict[str, Any]:
    return {"success": False, "message": message}
