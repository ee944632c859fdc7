"""The Higress console's REST API as the gateway backend speaks it: envelopes unwrapped, not-found told apart, retried.

The console answers in three shapes (higress-console `ControllerUtil`, `ApiStandardizationAspect`): a GET is
`{"success": true, "message": null, "data": …}` (a list adds `total`, `pageNum`, `pageSize`) or **404 with an
empty body** when the item is missing; a POST answers 201 with the raw object, a PUT 200 with the raw object, a
DELETE 204. Failures are `{"success": false, "message": "<ExceptionClass>: …"}` with 400, 401, 409
(`ResourceConflictException`: a stale `version`), **502 for the SDK's `NotFoundException`** and 500.

`ConsoleHTTP.call` runs one request under `gitops.providers.errors.call_with_retries` (429 with `Retry-After`,
5xx, timeouts and refused connections are retried a bounded number of times) and returns the unwrapped data,
or `MISSING` for a 404 and a 502 `NotFoundException`; `retrying(step)` does the same for a whole
read-then-write step made of `once` calls. A 409 is a `ConflictError`: the step runs again from its read.
An answer that is not what the API describes is an `UnexpectedAnswer` naming the request. Authentication is
HTTP Basic on every request (the console accepts it beside its session cookie), so there is no session to lose.
No message ever holds a credential, a key or a request body.

`reads` and `writes` count what reached the console, so tests and the benchmark can show a no-op pass writes
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx

from backends.http_service import ServiceHTTP
from backends.http_service import UnexpectedAnswer as UnexpectedAnswer  # re-exported: the backend raises it
from gitops.providers.errors import PermanentError, raise_for_response

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What `call` returns for an item the console does not have (404 with an empty body, or 502 NotFoundException)."""




def q(value: str) -> str:
    return quote(value, safe="")


class ConsoleHTTP(ServiceHTTP):
    """One Higress console: base URL, an httpx client with Basic auth, retry policy, request counters.
    `retrying(step)` runs a whole read-modify-write step: a conflict (409) runs it again from its read, so the
    write is always based on the record's newest version."""

    service = "the Higress console"

    def call(self, method: str, path: str, what: str, body: Any = None) -> Any:
        """One request, retried when transient; the unwrapped data, or MISSING for a missing item."""
        return self.retrying(lambda: self.once(method, path, what, body))

    def once(self, method: str, path: str, what: str, body: Any = None) -> Any:
        """One request, not retried (for steps that retry as a whole)."""
        self.count(write=method != "GET")
        response = self.send(method, path, what, json=body)
        return self._answer(method, response, what)

    def _answer(self, method: str, response: httpx.Response, what: str) -> Any:
        status = response.status_code
        if status == 404 and not response.content.strip():
            return MISSING
        if status == 502 and _message(response).startswith("NotFoundException"):
            return MISSING
        if status >= 400:
            if status == 401 or status == 403:
                raise PermanentError(f"{what}: HTTP {status} — the Higress console refused gateway.username and "
                                     "its password (gateway.password_env or gateway.password_file)")
            raise_for_response(response, what)
        if status == 204 or not response.content.strip():
            return None
        answer = self.json_of(response, what)
        if method != "GET":
            return answer  # POST and PUT answer with the raw object
        if not isinstance(answer, Mapping) or "data" not in answer:
            raise UnexpectedAnswer(f"{what}: the console's answer has no `data` envelope")
        if answer.get("success") is False:
            raise UnexpectedAnswer(f"{what}: the console answered success=false with HTTP {status}")
        return answer["data"]

    def get(self, path: str, what: str, *, retry: bool = True) -> dict[str, Any] | None:
        """An item as an object, or None when it does not exist (`retry=False` inside a step that retries)."""
        data = self.call("GET", path, what) if retry else self.once("GET", path, what)
        if data is MISSING:
            return None
        return _object(data, what)

    def items(self, path: str, what: str) -> list[dict[str, Any]]:
        """A list endpoint's items (every page: the console answers the whole list when no page is asked)."""
        data = self.call("GET", path, what)
        if data is MISSING or data is None:
            return []
        if not isinstance(data, list):
            raise UnexpectedAnswer(f"{what}: the console's `data` is not a list")
        return [_object(item, what) for item in data]

    def close(self) -> None:
        self.client.close()


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnexpectedAnswer(f"{what}: the console answered with an item that is not a JSON object")
    return value


def _message(response: httpx.Response) -> str:
    if len(response.content) > 64 * 1024:
        return ""
    try:
        body = json.loads(response.content or b"{}")
    except (ValueError, RecursionError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""


def text_list(value: Any, what: str, field: str) -> list[str]:
    """A list of names from an answer (`allowedConsumers`, `domains`); None is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnexpectedAnswer(f"{what}: the console's `{field}` is not a list of names")
    return list(value)


def sub(item: Mapping[str, Any], field: str, what: str) -> dict[str, Any]:
    """A nested object of an item (`authConfig`, `consumerAuthInfo`), empty when absent."""
    value = item.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnexpectedAnswer(f"{what}: the console's `{field}` is not an object")
    return value
