"""The one place that decides whether an HTTP backend's failure is worth retrying, and how long to wait.

Why this module exists:

- **httpx errors are not builtin errors.** `httpx.ReadTimeout` is not a `TimeoutError` and `httpx.ConnectError`
  is not a `ConnectionError`, so a plain `isinstance(exc, (TimeoutError, ConnectionError))` calls a dropped
  connection to Synapse, the Higress console, S3/IAM or the Kubernetes API permanent. `classify` knows both.
- **matrix-nio retries forever unless told.** Its `AsyncClientConfig.max_limit_exceeded` and `max_timeouts`
  default to None (no limit), so a rate-limited or unreachable homeserver can stall a reconcile pass for good.
  Backends should set those to 0 and let `call_with_retries` / the executor do bounded retries instead.
- **409 means re-read.** An optimistic-lock conflict (a stale Kubernetes resourceVersion, an ETag that moved)
  is worth retrying only after reading the record again: `ConflictError` says so, and `call_with_retries`
  calls `on_conflict` before the next attempt.
- **Servers say how long to wait.** `Retry-After` (delta-seconds or an HTTP-date, RFC 9110 §10.2.3) and
  Matrix's `M_LIMIT_EXCEEDED` body (`retry_after_ms`, or only the header on newer Synapse) are honoured,
  but capped at `MAX_RETRY_AFTER` so a hostile or confused server cannot park the reconciler.

The error taxonomy lives here; `gitops.providers.protocol` re-exports it for backends.
Error messages built here never carry request headers, request bodies or tokens in query strings.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # imported by whoever makes HTTP calls; an httpx error cannot exist before that
    import httpx

__all__ = [
    "MAX_RETRY_AFTER",
    "ConflictError",
    "PermanentError",
    "TransientError",
    "Verdict",
    "call_with_retries",
    "classify",
    "classify_response",
    "raise_for_response",
    "redact",
    "retry_delay",
]

T = TypeVar("T")

MAX_RETRY_AFTER = 300.0
"""Seconds: the longest wait any server can impose on us (Retry-After, retry_after_ms, TransientError)."""

_EXCERPT_CHARS = 200
_MAX_JSON_BYTES = 64 * 1024  # error bodies larger than this are not parsed (an excerpt is still shown)
_ERRCODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_DELTA_SECONDS = re.compile(r"[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]+")  # incl. bidi overrides
_SECRET_PARAM = re.compile(
    r"(?i)\b(access_token|refresh_token|token|password|passwd|secret|client_secret|api_key|apikey|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|signature|awsaccesskeyid)=[^&\s#\"'<]*"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")


class TransientError(Exception):
    """Worth retrying: a timeout, a 5xx, a 429, a conflict. `retry_after` (seconds) when the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help: a 4xx, a refused spec, a missing image. Stops this branch of the graph only."""


class ConflictError(TransientError):
    """An optimistic-lock conflict (HTTP 409 on a versioned write, a stale resourceVersion or ETag):
    re-read the record, then retry the write."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do about one failure. `retry_after` is in seconds (already capped), None when unknown;
    `reason` is short, for logs ("HTTP 503", "read timeout", "M_LIMIT_EXCEEDED")."""

    transient: bool
    retry_after: float | None
    conflict: bool
    reason: str


@cache
def _httpx_kinds() -> tuple[tuple[type[BaseException], ...], tuple[tuple[type[BaseException], str], ...]]:
    """httpx's permanent and transient error classes (httpx imported only once something used it)."""
    import httpx

    permanent = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.ProxyError)
    transient: tuple[tuple[type[BaseException], str], ...] = (
        (httpx.ConnectTimeout, "connect timeout"),
        (httpx.ReadTimeout, "read timeout"),
        (httpx.WriteTimeout, "write timeout"),
        (httpx.PoolTimeout, "pool timeout"),
        (httpx.TimeoutException, "timeout"),
        (httpx.ConnectError, "connect error"),
        (httpx.RemoteProtocolError, "remote protocol error"),
        (httpx.ReadError, "read error"),
        (httpx.WriteError, "write error"),
        (httpx.NetworkError, "network error"),
    )
    return permanent, transient
_TRANSIENT_BUILTIN: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (ConnectionAbortedError, "connection aborted"),
    (BrokenPipeError, "broken pipe"),
    (ConnectionError, "connection error"),
    (TimeoutError, "timeout"),
)


def classify(exc: BaseException) -> Verdict:
    """The single decision: is `exc` worth retrying, after how long, and must the record be re-read first."""
    if isinstance(exc, ConflictError):
        return Verdict(True, _cap(exc.retry_after), True, "conflict")
    if isinstance(exc, TransientError):
        return Verdict(True, _cap(exc.retry_after), False, "transient")
    if isinstance(exc, PermanentError):
        return Verdict(False, None, False, "permanent")
    httpx_kinds: tuple[tuple[type[BaseException], str], ...] = ()
    if "httpx" in sys.modules:  # otherwise no httpx error can exist
        import httpx

        if isinstance(exc, httpx.HTTPStatusError):
            return classify_response(exc.response)
        permanent, httpx_kinds = _httpx_kinds()
        if isinstance(exc, permanent):
            return Verdict(False, None, False, type(exc).__name__)
    for kinds in (httpx_kinds, _TRANSIENT_BUILTIN):
        for kind, reason in kinds:
            if isinstance(exc, kind):
                return Verdict(True, None, False, reason)
    return Verdict(False, None, False, type(exc).__name__)


def classify_response(response: httpx.Response) -> Verdict:
    """Decide by an HTTP response: 408, 409 (conflict), 423, 429, 5xx and Matrix M_LIMIT_EXCEEDED are transient;
    other 4xx permanent. A 2xx/3xx is not a failure (transient=False). Never raises, whatever the body."""
    status = response.status_code
    body = _json_body(response)
    errcode = _errcode(body)
    retry_after = _retry_after(response, body)
    if errcode == "M_LIMIT_EXCEEDED":
        return Verdict(True, retry_after, False, errcode)
    reason = f"HTTP {status}" + (f" {errcode}" if errcode else "")
    if status == 409:
        return Verdict(True, retry_after, True, reason)
    if status in (408, 423, 429) or 500 <= status <= 599:
        return Verdict(True, retry_after, False, reason)
    return Verdict(False, None, False, reason)


def raise_for_response(response: httpx.Response, what: str) -> None:
    """Return for 2xx/3xx; otherwise raise ConflictError, TransientError (with retry_after) or PermanentError,
    with `"{what}: HTTP {status} {errcode or reason}"` and a short excerpt of the server's own message.
    The message never carries request headers, request bodies or tokens (they are redacted)."""
    status = response.status_code
    if status < 400:
        return
    verdict = classify_response(response)
    body = _json_body(response)
    errcode = _errcode(body)
    label = errcode or _clean(response.reason_phrase, 60)
    message = f"{_clean(redact(what), 200)}: HTTP {status} {label}".rstrip()
    excerpt = _excerpt(response, body)
    if excerpt:
        message += f" — {excerpt}"
    message = redact(message)
    if verdict.conflict:
        raise ConflictError(message, verdict.retry_after)
    if verdict.transient:
        raise TransientError(message, verdict.retry_after)
    raise PermanentError(message)


def retry_delay(attempt: int, verdict: Verdict, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^(attempt-1))], never less than `verdict.retry_after`
    (itself capped at MAX_RETRY_AFTER)."""
    exponent = min(max(attempt, 1) - 1, 64)
    ceiling = max(0.0, min(cap, base * 2.0**exponent))
    delay = random.uniform(0.0, ceiling)  # jitter, not security
    retry_after = _cap(verdict.retry_after)
    return max(delay, retry_after) if retry_after is not None else delay


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base: float = 0.5,
    cap: float = 30.0,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_conflict: Callable[[], None] | None = None,
) -> T:
    """Run one idempotent HTTP step with bounded retries and return its result.

    Transient ⇒ sleep `retry_delay` and retry; conflict ⇒ sleep, call `on_conflict` (re-read the record) and
    retry (a failed re-read is itself an attempt, and is tried again); permanent, `attempts` used up, or the
    wait would pass `deadline` (a `time.monotonic()` value) ⇒ the last exception is re-raised as it is.
    """
    reread = False
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            if reread and on_conflict is not None:
                on_conflict()
                reread = False
            return fn()
        except Exception as exc:
            verdict = classify(exc)
            if not verdict.transient or attempt >= attempts:
                raise
            delay = retry_delay(attempt, verdict, base, cap)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            reread = reread or verdict.conflict
            sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def redact(text: str) -> str:
    """`text` with tokens in query strings (access_token=…, X-Amz-Signature=…) and Bearer/Basic credentials
    replaced by `***`."""
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} ***", text)


# Helpers ----------------------------------------------------------------------------------------------


def _cap(seconds: float | None) -> float | None:
    """A usable wait: None for missing, negative, NaN or non-numbers; at most MAX_RETRY_AFTER."""
    if seconds is None or isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    value = float(seconds)
    if math.isnan(value) or value < 0:
        return None
    return min(value, MAX_RETRY_AFTER)


def _content(response: httpx.Response) -> bytes:
    import httpx

    try:
        return response.content
    except httpx.ResponseNotRead:  # a streamed response nobody read: no body to judge by
        return b""


def _json_body(response: httpx.Response) -> dict[str, object] | None:
    content = _content(response)
    if not content or len(content) > _MAX_JSON_BYTES:
        return None
    try:
        parsed = json.loads(content)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return parsed if isinstance(parsed, dict) else None


def _errcode(body: dict[str, object] | None) -> str | None:
    code = body.get("errcode") if body else None
    return code if isinstance(code, str) and _ERRCODE.fullmatch(code) else None


def _retry_after(response: httpx.Response, body: dict[str, object] | None) -> float | None:
    """The longer of Matrix's retry_after_ms and the Retry-After header, capped; None if neither is usable."""
    waits: list[float] = []
    millis = body.get("retry_after_ms") if body else None
    if isinstance(millis, int | float) and not isinstance(millis, bool):
        try:
            seconds = _cap(float(millis) / 1000.0)
        except OverflowError:  # an integer too large for a float
            seconds = MAX_RETRY_AFTER if millis > 0 else None
        if seconds is not None:
            waits.append(seconds)
    header = _parse_retry_after(response.headers.get("retry-after"))
    if header is not None:
        waits.append(header)
    return max(waits) if waits else None


def _parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """RFC 9110 Retry-After: delta-seconds or an HTTP-date (a past date ⇒ 0). Garbage or negative ⇒ None."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return _cap(float(value))
    if not value or value[0] in "+-":  # "-5": a negative delay is garbage, not a date
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return _cap(max(0.0, seconds))


def _clean(text: str, limit: int) -> str:
    """One line of printable text, at most `limit` characters."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _excerpt(response: httpx.Response, body: dict[str, object] | None) -> str:
    """The server's own error message: Matrix `error` (or a `message` field), else the start of the body."""
    if body is not None:
        for field in ("error", "message"):
            value = body.get(field)
            if isinstance(value, str) and value.strip():
                return _clean(redact(value[: _EXCERPT_CHARS * 4]), _EXCERPT_CHARS)
    raw = _content(response)[: _EXCERPT_CHARS * 4]
    return _clean(redact(raw.decode("utf-8", errors="replace")), _EXCERPT_CHARS)
