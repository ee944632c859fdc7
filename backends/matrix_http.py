"""The Matrix client-server API as the Matrix backend speaks it: one request at a time, bounded retries, counted.

Every request goes through `MatrixHTTP.request`, which runs it under `gitops.providers.errors.call_with_retries`
(the one retry path: 429 / `M_LIMIT_EXCEEDED` honour `retry_after_ms`, 5xx, timeouts and refused connections —
a homeserver restarting — are retried a bounded number of times, everything else fails at once) and turns the
answer into a mapping. An answer that is not a JSON object is an `UnexpectedAnswer` naming the request; a
`MatrixError` carries the Matrix errcode so callers can branch on `M_USER_IN_USE` or `M_ROOM_IN_USE` without
parsing text. No message ever holds a token, a password or a request body.

`reads` and `writes` count what reached the server (GET and the read-only POSTs such as /sync's filter are
reads; every other method is a write; logins are counted apart), so tests and the benchmark can show that a
no-op pass writes nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import httpx

from gitops.providers.errors import (
    PermanentError,
    TransientError,
    call_with_retries,
    raise_for_response,
    redact,
)

CLIENT = "/_matrix/client/v3"
ADMIN = "/_synapse/admin"
DEFAULT_TIMEOUT = 30.0


class MatrixError(PermanentError):
    """The homeserver refused a request for good; `errcode` is its Matrix error code ('' when none)."""

    def __init__(self, message: str, errcode: str = "", status: int = 0, auth: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.status = status
        self.auth = dict(auth or {})  # user-interactive auth: session, flows, completed (registration)


class UnexpectedAnswer(PermanentError):
    """The homeserver answered with something its API does not describe (not JSON, or the wrong shape)."""


def q(value: str) -> str:
    """A path segment: user IDs, room IDs and aliases hold `@`, `!`, `#` and `:`."""
    return quote(value, safe="")


def shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, int | float) else type(value).__name__


def field(answer: Mapping[str, Any], name: str, kind: type, what: str) -> Any:
    """`answer[name]` when it has the expected type, else UnexpectedAnswer naming the request and the field."""
    value = answer.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise UnexpectedAnswer(f"{what}: the homeserver's answer has `{name}` as {shape(value)}, "
                               f"not {'a string' if kind is str else 'an object' if kind is dict else kind.__name__}")
    return value


class MatrixHTTP:
    """One homeserver: base URL, an httpx client, retry policy, request counters."""

    def __init__(self, base_url: str, client: httpx.Client, *, attempts: int = 5, backoff: float = 0.5,
                 backoff_max: float = 10.0, deadline: float = 120.0) -> None:
        self.base = base_url.rstrip("/")
        self.client = client
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.deadline = deadline
        self._lock = threading.Lock()
        self.reads = 0
        self.writes = 0
        self.logins = 0
        self.retried = 0

    def reset_counters(self) -> None:
        with self._lock:
            self.reads = self.writes = self.logins = self.retried = 0

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        token: str = "",
        body: Any = None,
        params: Mapping[str, str] | None = None,
        read_only: bool = False,
    ) -> dict[str, Any]:
        """The JSON object the homeserver answered with; MatrixError / TransientError / UnexpectedAnswer.

        `what` names the request for people ("invite @a:hs to !room"); it is the start of every message."""
        answer = self.request_any(method, path, what=what, token=token, body=body, params=params,
                                  read_only=read_only)
        if not isinstance(answer, dict):
            raise UnexpectedAnswer(f"{what}: the homeserver answered with {shape(answer)}, not a JSON object")
        return answer

    def request_list(self, method: str, path: str, *, what: str, token: str = "") -> list[Any]:
        """A request answered with a JSON list (a room's state)."""
        answer = self.request_any(method, path, what=what, token=token)
        if not isinstance(answer, list):
            raise UnexpectedAnswer(f"{what}: the homeserver answered with {shape(answer)}, not a list")
        return answer

    def request_any(
        self,
        method: str,
        path: str,
        *,
        what: str,
        token: str = "",
        body: Any = None,
        params: Mapping[str, str] | None = None,
        read_only: bool = False,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        attempt = [0]

        def once() -> Any:
            attempt[0] += 1
            if attempt[0] > 1:
                with self._lock:
                    self.retried += 1
            self._count(method, path, read_only)
            import httpx  # here, not at the top: reading the backend's traits must not import it

            try:
                response = self.client.request(method, self.base + path, headers=headers, json=body, params=params)
            except httpx.HTTPError as exc:
                raise TransientError(f"{what}: {type(exc).__name__} talking to the homeserver at {self.base}"
                                     f"{': ' + redact(str(exc)) if str(exc) else ''}") from None
            return self._answer(response, what)

        return call_with_retries(once, attempts=self.attempts, base=self.backoff, cap=self.backoff_max,
                                 deadline=time.monotonic() + self.deadline)

    def _count(self, method: str, path: str, read_only: bool) -> None:
        with self._lock:
            if path.endswith("/login"):
                self.logins += 1
            elif method == "GET" or read_only:
                self.reads += 1
            else:
                self.writes += 1

    def _answer(self, response: httpx.Response, what: str) -> Any:
        if response.status_code >= 400:
            body = _body(response)
            errcode = body.get("errcode")
            auth: dict[str, Any] = {k: body[k] for k in ("session", "flows", "completed") if k in body}
            try:
                raise_for_response(response, what)
            except PermanentError as exc:
                message = str(exc) if not auth else f"{what}: HTTP {response.status_code} (authentication needed)"
                raise MatrixError(message, errcode if isinstance(errcode, str) else "", response.status_code,
                                  auth) from None
        try:
            answer = json.loads(response.content or b"{}")
        except (ValueError, RecursionError):
            excerpt = " ".join(response.content[:120].decode("utf-8", errors="replace").split())
            raise UnexpectedAnswer(f"{what}: the homeserver answered HTTP {response.status_code} with something "
                                   f"that is not JSON ({redact(excerpt)!r})") from None
        return answer

    def close(self) -> None:
        self.client.close()


def _body(response: httpx.Response) -> dict[str, Any]:
    if len(response.content) > 64 * 1024:
        return {}
    try:
        body = json.loads(response.content or b"{}")
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}
