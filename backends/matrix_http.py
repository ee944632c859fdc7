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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import httpx

from backends.http_service import ServiceHTTP
from backends.http_service import UnexpectedAnswer as UnexpectedAnswer  # re-exported: the backend raises it
from gitops.providers.errors import (
    PermanentError,
    raise_for_response,
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


class MatrixHTTP(ServiceHTTP):
    """One homeserver: base URL, an httpx client, retry policy, request counters (logins counted apart)."""

    service = "the homeserver"

    def __init__(self, base_url: str, client: httpx.Client, **policy: Any) -> None:
        super().__init__(base_url, client, **policy)
        self.logins = 0

    def reset_counters(self) -> None:
        super().reset_counters()
        with self._lock:
            self.logins = 0

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
                self.count_retry()
            if path.endswith("/login"):
                with self._lock:
                    self.logins += 1
            else:
                self.count(write=not (method == "GET" or read_only))
            response = self.send(method, path, what, headers=headers, json=body, params=params)
            return self._answer(response, what)

        return self.retrying(once)

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
        return self.json_of(response, what)


def _body(response: httpx.Response) -> dict[str, Any]:
    if len(response.content) > 64 * 1024:
        return {}
    try:
        body = json.loads(response.content or b"{}")
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}
