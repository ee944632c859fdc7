"""gitops.providers.errors: what is worth retrying, how long to wait, and that retries stay bounded.

Responses are built in memory; the retry loop, a read timeout and a refused connection are also exercised
against real sockets on 127.0.0.1 (never anything else).
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gitops.providers import errors
from gitops.providers.errors import (
    MAX_RETRY_AFTER,
    ConflictError,
    PermanentError,
    TransientError,
    Verdict,
    call_with_retries,
    classify,
    classify_response,
    raise_for_response,
    retry_delay,
)

REQUEST = httpx.Request("GET", "http://127.0.0.1/x")


def response(status: int, *, headers: dict[str, str] | None = None, json_body: Any = None,
             content: bytes | None = None, request: httpx.Request = REQUEST) -> httpx.Response:
    if content is not None:
        return httpx.Response(status, headers=headers, content=content, request=request)
    return httpx.Response(status, headers=headers, json=json_body, request=request)


def limit_exceeded(ms: Any = 1200) -> dict[str, Any]:
    return {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": ms}


class Recorder:
    """An injected sleep: remembers each delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# classify: exceptions ----------------------------------------------------------------------------------


def test_httpx_errors_are_not_builtin_timeouts_or_connection_errors() -> None:
    # The premise of the module: an isinstance check on builtins alone would call these permanent.
    assert not isinstance(httpx.ReadTimeout("x"), TimeoutError)
    assert not isinstance(httpx.ConnectError("x"), ConnectionError)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectTimeout("x"), "connect timeout"),
        (httpx.ReadTimeout("x"), "read timeout"),
        (httpx.WriteTimeout("x"), "write timeout"),
        (httpx.PoolTimeout("x"), "pool timeout"),
        (httpx.ConnectError("x"), "connect error"),
        (httpx.RemoteProtocolError("x"), "remote protocol error"),
        (httpx.ReadError("x"), "read error"),
        (httpx.WriteError("x"), "write error"),
        (httpx.NetworkError("x"), "network error"),
        (TimeoutError("x"), "timeout"),
        (ConnectionError("x"), "connection error"),
        (ConnectionRefusedError("x"), "connection refused"),
        (ConnectionResetError("x"), "connection reset"),
    ],
)
def test_network_failures_are_transient(exc: BaseException, reason: str) -> None:
    assert classify(exc) == Verdict(transient=True, retry_after=None, conflict=False, reason=reason)


@pytest.mark.parametrize(
    "exc",
    [ValueError("x"), KeyError("k"), RuntimeError("x"), httpx.LocalProtocolError("x"), httpx.UnsupportedProtocol("x"),
     PermanentError("refused"), KeyboardInterrupt()],
)
def test_anything_else_is_permanent(exc: BaseException) -> None:
    verdict = classify(exc)
    assert (verdict.transient, verdict.retry_after, verdict.conflict) == (False, None, False)


def test_declared_errors_keep_their_kind_and_capped_retry_after() -> None:
    assert classify(TransientError("x", retry_after=2.5)) == Verdict(True, 2.5, False, "transient")
    assert classify(TransientError("x")) == Verdict(True, None, False, "transient")
    assert classify(ConflictError("stale resourceVersion")) == Verdict(True, None, True, "conflict")
    assert classify(TransientError("x", retry_after=1e9)).retry_after == MAX_RETRY_AFTER
    assert classify(TransientError("x", retry_after=-1.0)).retry_after is None
    assert classify(TransientError("x", retry_after=float("nan"))).retry_after is None
    assert isinstance(ConflictError("x"), TransientError)


def test_http_status_error_is_decided_by_its_response() -> None:
    transient = httpx.HTTPStatusError("x", request=REQUEST, response=response(503, headers={"Retry-After": "4"}))
    assert classify(transient) == Verdict(True, 4.0, False, "HTTP 503")
    not_found = response(404, json_body={"errcode": "M_NOT_FOUND"})
    permanent = httpx.HTTPStatusError("x", request=REQUEST, response=not_found)
    assert classify(permanent) == Verdict(False, None, False, "HTTP 404 M_NOT_FOUND")


# classify_response --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 423, 429, 500, 502, 503, 504, 599])
def test_transient_statuses(status: int) -> None:
    assert classify_response(response(status)) == Verdict(True, None, False, f"HTTP {status}")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
def test_other_4xx_are_permanent(status: int) -> None:
    assert classify_response(response(status)) == Verdict(False, None, False, f"HTTP {status}")


def test_409_is_a_conflict() -> None:
    verdict = classify_response(response(409, json_body={"kind": "Status", "reason": "Conflict", "code": 409}))
    assert (verdict.transient, verdict.conflict, verdict.reason) == (True, True, "HTTP 409")


def test_success_is_not_a_failure() -> None:
    assert not classify_response(response(200, json_body={})).transient


def test_matrix_limit_exceeded_body() -> None:
    assert classify_response(response(429, json_body=limit_exceeded(1200))) == Verdict(
        True, 1.2, False, "M_LIMIT_EXCEEDED"
    )
    # Some proxies send it with another status: the errcode still says "slow down".
    assert classify_response(response(400, json_body=limit_exceeded(500))) == Verdict(
        True, 0.5, False, "M_LIMIT_EXCEEDED"
    )


def test_matrix_limit_exceeded_newer_shape_uses_retry_after_header() -> None:
    body = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}
    assert classify_response(response(429, headers={"Retry-After": "3"}, json_body=body)).retry_after == 3.0
    # Both present: the longer wait wins.
    both = response(429, headers={"Retry-After": "2"}, json_body=limit_exceeded(5000))
    assert classify_response(both).retry_after == 5.0


def test_retry_after_delta_seconds() -> None:
    assert classify_response(response(503, headers={"Retry-After": "7"})).retry_after == 7.0
    assert classify_response(response(429, headers={"Retry-After": " 0 "})).retry_after == 0.0


def test_retry_after_http_date() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    retry_after = classify_response(response(503, headers={"Retry-After": soon})).retry_after
    assert retry_after is not None and 100.0 <= retry_after <= 120.0

    past = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert classify_response(response(503, headers={"Retry-After": past})).retry_after == 0.0
    asctime = "Sun Nov  6 08:49:37 1994"  # the obsolete format a recipient must accept, naive ⇒ GMT
    assert classify_response(response(503, headers={"Retry-After": asctime})).retry_after == 0.0


@pytest.mark.parametrize(
    "value", ["soon", "-5", "1.5", "", "12abc", "Wed, 99 Foo 2024 00:00:00 GMT", "Sun, 06 Nov 99999 08:49:37 GMT"]
)
def test_garbage_retry_after_is_ignored(value: str) -> None:
    assert classify_response(response(503, headers={"Retry-After": value})) == Verdict(True, None, False, "HTTP 503")


@pytest.mark.parametrize("ms", [-1, "1200", True, None, [1]])
def test_unusable_retry_after_ms_is_ignored(ms: Any) -> None:
    assert classify_response(response(429, json_body=limit_exceeded(ms))).retry_after is None


def test_retry_after_is_capped() -> None:
    assert classify_response(response(503, headers={"Retry-After": "86400"})).retry_after == MAX_RETRY_AFTER
    assert classify_response(response(503, headers={"Retry-After": "9" * 400})).retry_after == MAX_RETRY_AFTER
    far = "Fri, 01 Jan 2999 00:00:00 GMT"
    assert classify_response(response(503, headers={"Retry-After": far})).retry_after == MAX_RETRY_AFTER
    assert classify_response(response(429, json_body=limit_exceeded(10**9))).retry_after == MAX_RETRY_AFTER
    assert classify_response(response(429, json_body=limit_exceeded(10**400))).retry_after == MAX_RETRY_AFTER
    infinite = b'{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": Infinity}'
    assert classify_response(response(429, content=infinite)).retry_after == MAX_RETRY_AFTER
    not_a_number = b'{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": NaN}'
    assert classify_response(response(429, content=not_a_number)).retry_after is None


@pytest.mark.parametrize(
    "content",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b"null",
        b'{"errcode": 5, "error": ["x"], "retry_after_ms": {"a": 1}}',
        b'{"errcode": "M_LIMIT_EXCEEDED\\n injected"}',
        b"[" * 60_000,  # deeply nested: the parser's recursion limit
        b'{"error": "' + b"x" * 200_000 + b'"}',  # too large to parse
        b'{"truncated": ',
    ],
)
def test_malformed_bodies_never_raise(content: bytes) -> None:
    verdict = classify_response(response(502, content=content))
    assert verdict == Verdict(True, None, False, "HTTP 502")
    with pytest.raises(TransientError) as raised:
        raise_for_response(response(502, content=content), "get thing")
    assert len(str(raised.value)) < 300


def test_unread_streamed_response_never_raises() -> None:
    streamed = httpx.Response(503, stream=httpx.ByteStream(b'{"errcode": "M_UNKNOWN"}'), request=REQUEST)
    assert classify_response(streamed) == Verdict(True, None, False, "HTTP 503")
    with pytest.raises(TransientError, match=r"^sync: HTTP 503 Service Unavailable$"):
        raise_for_response(streamed, "sync")


# raise_for_response -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 301, 304])
def test_success_and_redirects_return(status: int) -> None:
    raise_for_response(response(status), "get thing")  # no exception


def test_raises_by_kind_with_a_short_message() -> None:
    with pytest.raises(ConflictError) as conflict:
        raise_for_response(response(409, json_body={"message": "the object has been modified"}), "update worker")
    assert str(conflict.value) == "update worker: HTTP 409 Conflict — the object has been modified"

    with pytest.raises(TransientError) as limited:
        raise_for_response(response(429, json_body=limit_exceeded(1200)), "join room")
    assert not isinstance(limited.value, ConflictError)
    assert limited.value.retry_after == 1.2
    assert str(limited.value) == "join room: HTTP 429 M_LIMIT_EXCEEDED — Too Many Requests"

    with pytest.raises(TransientError) as unavailable:
        raise_for_response(response(503, headers={"Retry-After": "2"}, content=b"upstream down"), "put object")
    assert unavailable.value.retry_after == 2.0
    assert str(unavailable.value) == "put object: HTTP 503 Service Unavailable — upstream down"

    with pytest.raises(PermanentError) as missing:
        raise_for_response(response(404, json_body={"errcode": "M_NOT_FOUND", "error": "Room not found"}), "get room")
    assert str(missing.value) == "get room: HTTP 404 M_NOT_FOUND — Room not found"

    with pytest.raises(PermanentError, match=r"^get route: HTTP 403 Forbidden$"):
        raise_for_response(response(403, content=b""), "get route")


def test_excerpt_is_short_and_free_of_control_characters() -> None:
    body = b"\x1b[31mboom\x1b[0m\r\nInjected: log line\x00\xe2\x80\xae" + b"y" * 1000
    with pytest.raises(TransientError) as raised:
        raise_for_response(response(500, content=body), "apply route")
    message = str(raised.value)
    assert message.startswith("apply route: HTTP 500 Internal Server Error — [31mboom [0m Injected: log line")
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or ch == "\u202e" for ch in message)
    excerpt = message.split(" — ", 1)[1]
    assert len(excerpt) <= 200


def test_tokens_never_reach_the_message() -> None:
    url = "http://127.0.0.1/_matrix/client/v3/rooms/!r:hs/join?access_token=syt_SECRET_ONE&via=hs"
    request = httpx.Request(
        "POST", url, headers={"Authorization": "Bearer syt_SECRET_TWO"}, json={"password": "hunter2-SECRET_THREE"}
    )
    echoed = {
        "errcode": "M_UNKNOWN_TOKEN",
        "error": f"Invalid token in {url}; Authorization: Bearer syt_SECRET_TWO",
    }
    with pytest.raises(PermanentError) as raised:
        raise_for_response(response(401, json_body=echoed, request=request), f"POST {url}")
    message = str(raised.value)
    assert "SECRET" not in message
    assert "access_token=***" in message and "&via=hs" in message
    assert message.startswith("POST http://127.0.0.1/_matrix/client/v3/rooms/!r:hs/join?access_token=***&via=hs: ")

    presigned = "http://127.0.0.1/bucket/key?X-Amz-Credential=AKIA_SECRET&X-Amz-Signature=abc_SECRET"
    with pytest.raises(PermanentError) as s3:
        raise_for_response(response(403, content=f"<Error><Resource>{presigned}</Resource></Error>".encode()), "get")
    assert "SECRET" not in str(s3.value)


# retry_delay --------------------------------------------------------------------------------------------


def test_retry_delay_is_full_jitter_within_the_exponential_ceiling() -> None:
    random.seed(7)
    plain = Verdict(True, None, False, "HTTP 503")
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 10.0), (10_000, 10.0)]:
        delays = [retry_delay(attempt, plain, 0.5, 10.0) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # really spread over the range
        assert min(delays) < ceiling * 0.2


def test_retry_delay_never_less_than_retry_after() -> None:
    random.seed(7)
    told = Verdict(True, 3.0, False, "HTTP 429")
    assert all(3.0 <= retry_delay(1, told, 0.5, 30.0) <= 3.0 for _ in range(50))
    assert all(retry_delay(8, told, 0.5, 30.0) >= 3.0 for _ in range(50))
    hostile = Verdict(True, 1e9, False, "HTTP 429")  # built by hand, not through classify: capped all the same
    assert retry_delay(1, hostile, 0.5, 30.0) == MAX_RETRY_AFTER


# call_with_retries -----------------------------------------------------------------------------------------


class Script:
    """A step that fails with the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException, log: list[str] | None = None, name: str = "write") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.log = log if log is not None else []
        self.name = name

    def __call__(self) -> str:
        self.calls += 1
        self.log.append(self.name)
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def status_error(status: int, **kwargs: Any) -> httpx.HTTPStatusError:
    return httpx.HTTPStatusError(f"HTTP {status}", request=REQUEST, response=response(status, **kwargs))


def test_success_needs_no_retry() -> None:
    sleep = Recorder()
    step = Script()
    assert call_with_retries(step, sleep=sleep) == "done"
    assert (step.calls, sleep.delays) == (1, [])


def test_transient_failures_are_retried() -> None:
    sleep = Recorder()
    step = Script(httpx.ReadTimeout("slow"), status_error(503, headers={"Retry-After": "2"}), ConnectionResetError())
    assert call_with_retries(step, sleep=sleep, base=0.1, cap=1.0) == "done"
    assert step.calls == 4
    assert len(sleep.delays) == 3
    assert 0.0 <= sleep.delays[0] <= 0.1 and sleep.delays[1] >= 2.0 and 0.0 <= sleep.delays[2] <= 0.4


def test_conflict_rereads_before_retrying() -> None:
    log: list[str] = []
    sleep = Recorder()
    step = Script(status_error(409), ConflictError("stale ETag"), log=log)
    assert call_with_retries(step, sleep=sleep, on_conflict=lambda: log.append("reread")) == "done"
    assert log == ["write", "reread", "write", "reread", "write"]
    assert len(sleep.delays) == 2


def test_a_failed_reread_is_an_attempt_and_is_tried_again() -> None:
    log: list[str] = []
    rereads = Script(httpx.ConnectError("down"), log=log, name="reread")
    step = Script(ConflictError("stale"), log=log)

    def reread() -> None:
        rereads()

    assert call_with_retries(step, sleep=Recorder(), on_conflict=reread) == "done"
    # write (conflict) → re-read fails (transient) → re-read again, then write
    assert log == ["write", "reread", "reread", "write"]
    assert (step.calls, rereads.calls) == (2, 2)


def test_transient_without_on_conflict_just_retries() -> None:
    step = Script(ConflictError("stale"))
    assert call_with_retries(step, sleep=Recorder()) == "done"
    assert step.calls == 2


@pytest.mark.parametrize("status", [400, 403, 404])
def test_permanent_failures_are_not_retried(status: int) -> None:
    sleep = Recorder()
    error = status_error(status, json_body={"errcode": "M_FORBIDDEN"})
    step = Script(error)
    with pytest.raises(httpx.HTTPStatusError) as raised:
        call_with_retries(step, sleep=sleep, on_conflict=lambda: pytest.fail("no re-read for a permanent error"))
    assert raised.value is error  # re-raised as it is
    assert (step.calls, sleep.delays) == (1, [])


def test_attempts_bound_the_retries() -> None:
    sleep = Recorder()
    errors = [TransientError(f"503 #{i}") for i in range(10)]
    step = Script(*errors)
    with pytest.raises(TransientError) as raised:
        call_with_retries(step, attempts=3, sleep=sleep)
    assert raised.value is errors[2]  # the last one, not the first
    assert step.calls == 3 and len(sleep.delays) == 2


def test_at_least_one_attempt() -> None:
    step = Script(TransientError("503"))
    with pytest.raises(TransientError):
        call_with_retries(step, attempts=0, sleep=Recorder())
    assert step.calls == 1


def test_deadline_bounds_the_retries() -> None:
    sleep = Recorder()
    error = TransientError("rate limited", retry_after=5.0)
    step = Script(error, TransientError("unreachable"))
    with pytest.raises(TransientError) as raised:
        call_with_retries(step, attempts=10, deadline=time.monotonic() + 1.0, sleep=sleep)
    assert raised.value is error  # waiting 5 s would pass the deadline: give up now
    assert (step.calls, sleep.delays) == (1, [])


class FakeClock(Recorder):
    """A monotonic clock that only moves when slept on."""

    def __init__(self, now: float) -> None:
        super().__init__()
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        self.now += seconds


def test_deadline_counts_the_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(100.0)
    monkeypatch.setattr(errors, "time", clock)  # only the module's view of time
    errors_raised = [TransientError(f"503 #{i}", retry_after=0.3) for i in range(10)]
    step = Script(*errors_raised)
    with pytest.raises(TransientError) as raised:
        call_with_retries(step, attempts=10, base=0.01, cap=0.01, deadline=101.0, sleep=clock)
    # waits end at 100.3, 100.6, 100.9; a fourth would end at 101.2, past the deadline
    assert clock.delays == [0.3, 0.3, 0.3]
    assert step.calls == 4 and raised.value is errors_raised[3]


def test_base_exceptions_pass_through() -> None:
    step = Script(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        call_with_retries(step, sleep=Recorder())
    assert step.calls == 1


# Real sockets on 127.0.0.1 ------------------------------------------------------------------------------


class _Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next (status, headers, body) of the server's script."""

    protocol_version = "HTTP/1.1"
    server: _ScriptedServer

    def do_GET(self) -> None:
        status, headers, body = self.server.next_answer()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.answers = answers
        self.hits = 0
        self.lock = threading.Lock()

    def next_answer(self) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.hits += 1
            return self.answers[min(self.hits, len(self.answers)) - 1]


@pytest.fixture
def scripted_server() -> Iterator[_ScriptedServer]:
    json_type = {"Content-Type": "application/json"}
    server = _ScriptedServer([
        (429, json_type, json.dumps({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1200}).encode()),
        (503, {"Retry-After": "1", "Content-Type": "text/plain"}, b"try again"),
        (200, json_type, b'{"next_batch": "s1"}'),
    ])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def _via_raise_for_response(client: httpx.Client, url: str) -> Any:
    answer = client.get(url)
    raise_for_response(answer, "sync")
    return answer.json()


def _via_httpx_raise_for_status(client: httpx.Client, url: str) -> Any:
    return client.get(url).raise_for_status().json()


@pytest.mark.parametrize("get", [_via_raise_for_response, _via_httpx_raise_for_status])
def test_real_server_429_then_503_then_200(scripted_server: _ScriptedServer,
                                           get: Callable[[httpx.Client, str], Any]) -> None:
    host, port = scripted_server.server_address[:2]
    url = f"http://{host!s}:{port}/_matrix/client/v3/sync"
    sleep = Recorder()
    calls = 0
    with httpx.Client(timeout=2.0) as client:

        def step() -> Any:
            nonlocal calls
            calls += 1
            return get(client, url)

        assert call_with_retries(step, sleep=sleep, base=0.01, cap=0.1) == {"next_batch": "s1"}
    assert calls == 3 and scripted_server.hits == 3
    assert len(sleep.delays) == 2
    assert sleep.delays[0] >= 1.2  # retry_after_ms from the M_LIMIT_EXCEEDED body
    assert sleep.delays[1] >= 1.0  # Retry-After: 1


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """Accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
        for conn in held:
            conn.close()


def test_real_read_timeout_is_transient(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout) as raised:
        client.get(f"http://{host}:{port}/x")
    assert classify(raised.value) == Verdict(True, None, False, "read timeout")


def test_real_refused_connection_is_transient() -> None:
    # A port bound but not listening: the kernel answers a connect with RST (refused), and nobody can take it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        host, port = closed.getsockname()[:2]
        with httpx.Client(timeout=1.0) as client, pytest.raises(httpx.ConnectError) as raised:
            client.get(f"http://{host}:{port}/x")
        assert classify(raised.value) == Verdict(True, None, False, "connect error")
        with pytest.raises(ConnectionRefusedError) as refused:
            socket.create_connection((host, port), timeout=1.0).close()
        assert classify(refused.value) == Verdict(True, None, False, "connection refused")
