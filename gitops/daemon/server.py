"""The daemon's HTTP endpoint: /healthz, /readyz, /metrics and the GitHub push webhook (signature-checked)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gitops.daemon.health import Health
from gitops.daemon.logs import event
from gitops.daemon.metrics import CONTENT_TYPE, Metrics

MAX_WEBHOOK_BYTES = 1 << 20


def verify_github_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """GitHub's X-Hub-Signature-256: `sha256=` + hex HMAC-SHA256 of the raw body, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


class HttpServer:
    """/healthz, /readyz, /metrics and POST /webhook, served from a thread; the loop is never blocked."""

    def __init__(
        self,
        listen: str,
        *,
        health: Health,
        metrics: Metrics,
        wake: threading.Event,
        webhook_secret: str | None = None,
        branch: str = "",
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.health, self.metrics, self.wake = health, metrics, wake
        self.secret = webhook_secret.encode() if webhook_secret else None
        self.branch = branch
        handler = self._handler()
        self.server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="hiclaw-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> HttpServer:
        self.thread.start()
        event(logging.INFO, "http endpoint listening", address=self.address, webhook=self.secret is not None)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "hiclaw-gitops"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                pass  # access logs would drown the reconciler's own lines

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, data: Mapping[str, Any]) -> None:
                self._send(code, (json.dumps(data) + "\n").encode())

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    snap = outer.health.snapshot()
                    self._json(200 if snap["alive"] else 503, snap)
                elif path == "/readyz":
                    snap = outer.health.snapshot()
                    self._json(200 if snap["ready"] and snap["alive"] else 503, snap)
                elif path == "/metrics":
                    self._send(200, outer.metrics.render(), CONTENT_TYPE)
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/webhook":
                    self._json(404, {"error": "not found"})
                    return
                if outer.secret is None:
                    outer.metrics.webhooks.labels("disabled").inc()
                    self._json(404, {"error": "webhook not configured (source.webhook_secret_env / _file)"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_WEBHOOK_BYTES:
                    outer.metrics.webhooks.labels("rejected").inc()
                    self._json(413, {"error": "payload too large"})
                    return
                body = self.rfile.read(length)
                if not verify_github_signature(outer.secret, body, self.headers.get("X-Hub-Signature-256")):
                    outer.metrics.webhooks.labels("unauthorized").inc()
                    event(logging.WARNING, "webhook refused: bad or missing signature",
                          client=self.client_address[0])
                    self._json(401, {"error": "bad signature"})
                    return
                if self.headers.get("X-GitHub-Event") == "ping":
                    outer.metrics.webhooks.labels("ping").inc()
                    self._json(200, {"pong": True})
                    return
                ref = _payload_ref(body)
                if ref and outer.branch and ref != f"refs/heads/{outer.branch}":
                    outer.metrics.webhooks.labels("ignored").inc()
                    self._json(202, {"queued": False, "reason": f"push to {ref}, not the followed branch"})
                    return
                outer.metrics.webhooks.labels("accepted").inc()
                outer.wake.set()
                self._json(202, {"queued": True})

        return Handler


def _payload_ref(body: bytes) -> str:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return ""
    ref = data.get("ref") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) else ""
