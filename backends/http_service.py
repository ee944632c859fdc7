"""What the HTTP-speaking backends share: one service's base URL and httpx client, a bounded retry policy
(`gitops.providers.errors.call_with_retries`), counters of what reached the service, and the conversion of
transport failures and non-JSON answers into errors that name the request — never a credential or a body.

httpx is imported when a request is made, not with this module: reading a backend's traits (every plan does)
must not import it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gitops.providers.errors import PermanentError, TransientError, call_with_retries, redact

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


class UnexpectedAnswer(PermanentError):
    """The service answered with something its API does not describe (not JSON, the wrong shape)."""


class ServiceHTTP:
    """One service. `service` names it in messages ("the homeserver", "the Higress console")."""

    service = "the service"

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
        self.retried = 0

    def reset_counters(self) -> None:
        with self._lock:
            self.reads = self.writes = self.retried = 0

    def retrying(self, step: Callable[[], T]) -> T:
        """Run `step` (one request, or a whole read-then-write) with the bounded retry policy."""
        return call_with_retries(step, attempts=self.attempts, base=self.backoff, cap=self.backoff_max,
                                 deadline=time.monotonic() + self.deadline)

    def count(self, write: bool) -> None:
        with self._lock:
            if write:
                self.writes += 1
            else:
                self.reads += 1

    def count_retry(self) -> None:
        with self._lock:
            self.retried += 1

    def send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request as it is; a transport failure is a TransientError naming the request."""
        import httpx

        try:
            return self.client.request(method, self.base + path, **kwargs)
        except httpx.HTTPError as exc:
            raise TransientError(f"{what}: {type(exc).__name__} talking to {self.service} at {self.base}"
                                 f"{': ' + redact(str(exc)) if str(exc) else ''}") from None

    def json_of(self, response: httpx.Response, what: str) -> Any:
        """The answer's JSON (an empty body reads as `{}`), or UnexpectedAnswer with a redacted excerpt."""
        try:
            return json.loads(response.content or b"{}")
        except (ValueError, RecursionError):
            excerpt = " ".join(response.content[:120].decode("utf-8", errors="replace").split())
            raise UnexpectedAnswer(f"{what}: {self.service} answered HTTP {response.status_code} with something "
                                   f"that is not JSON ({redact(excerpt)!r})") from None

    def close(self) -> None:
        self.client.close()
