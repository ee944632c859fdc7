"""The console's bad days, on the contract fake: 429 and 5xx retried within bounds, a 409 from someone else's
write re-read and retried, 404-with-empty-body and 502 NotFoundException understood as "missing", and answers
the API does not describe refused with a message naming the request — never a traceback, never a key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.gateway import GatewayBackend
from backends.gateway_http import UnexpectedAnswer
from gitops.objects import ManagedObject, Provider
from gitops.providers.conformance import assert_ok, pending
from gitops.providers.protocol import BackendContext, Outcome, PermanentError, Scope, TransientError
from gitops.settings.model import GatewaySettings

from .fake_higress import LOST, FakeHigress
from .harness import fast
from .reconcile import QWEN, Reconciler, worker
from .site import Site

EVERYTHING = Scope({t: frozenset() for t in GatewayBackend.types})


@pytest.fixture
def fake_site(tmp_path: Path) -> Iterator[Site]:
    yield from Site.on_fake(tmp_path)


@pytest.fixture
def rec(fake_site: Site, tmp_path: Path) -> Iterator[Reconciler]:
    r = Reconciler(fake_site, tmp_path / "state")
    yield r
    r.close()


@pytest.fixture
def fake(fake_site: Site) -> FakeHigress:
    assert fake_site.fake is not None
    return fake_site.fake


def objs(rec: Reconciler, name: str = "gwtest-alice") -> dict[str, ManagedObject]:
    return {o.type: o for o in rec.objects(worker(name))}


def no_key_in(rec: Reconciler, text: str) -> bool:
    return not any(k in text for k in rec.issued())


def test_429_with_retry_after_is_waited_for_then_retried(rec: Reconciler, fake: FakeHigress) -> None:
    fake.fail("GET", "/v1/consumers", 429, times=1, retry_after="1")
    backend = rec.backend()
    started = time.monotonic()
    try:
        assert backend.observe(EVERYTHING) == {}
    finally:
        backend.close()
    assert time.monotonic() - started >= 0.9
    assert fake.requests.count(("GET", "/v1/consumers")) == 2


def test_5xx_are_retried_and_a_grant_still_lands(rec: Reconciler, fake: FakeHigress) -> None:
    o = objs(rec)
    backend = rec.backend()
    try:
        backend.apply(o["consumer"], "create", None, rec.secrets.resolve)
        fake.fail("PUT", f"/v1/ai/routes/{QWEN}", 503, times=2)
        assert backend.apply(o["ai-route-grant"], "create", None, rec.secrets.resolve).outcome is Outcome.CREATED
    finally:
        backend.close()
    assert "worker-gwtest-alice" in rec.site.route_allowed(QWEN)


def test_a_500_that_never_ends_is_bounded_and_named(rec: Reconciler, fake: FakeHigress) -> None:
    fake.fail("POST", "/v1/consumers", 500, times=100)
    backend = rec.backend()
    try:
        with pytest.raises(TransientError) as caught:
            backend.apply(objs(rec)["consumer"], "create", None, rec.secrets.resolve)
    finally:
        backend.close()
    message = str(caught.value)
    assert message.startswith("write consumer worker-gwtest-alice: HTTP 500") and "injected 500" in message
    assert fake.requests.count(("POST", "/v1/consumers")) == backend.http.attempts
    assert no_key_in(rec, message)


def test_someone_elses_write_between_read_and_put_is_a_409_then_converges(rec: Reconciler, fake: FakeHigress) -> None:
    o = objs(rec)
    backend = rec.backend()
    edits = iter(range(3))

    def meddle(collection: str, name: str) -> None:  # someone edits the route right before our PUT, three times
        if collection == "ai_routes" and next(edits, None) is not None:
            fake.edit_route(name, lambda r: r["authConfig"]["allowedConsumers"].append(f"other-{fake.version}"))

    try:
        backend.apply(o["consumer"], "create", None, rec.secrets.resolve)
        fake.before_write = meddle
        assert backend.apply(o["ai-route-grant"], "create", None, rec.secrets.resolve).outcome is Outcome.CREATED
    finally:
        fake.before_write = None
        backend.close()
    allowed = rec.site.route_allowed(QWEN)
    assert fake.conflicts == 3
    assert "worker-gwtest-alice" in allowed and len([c for c in allowed if c.startswith("other-")]) == 3


def test_missing_items_404_empty_and_502_not_found_mean_absent(rec: Reconciler, fake: FakeHigress) -> None:
    gone = ManagedObject(Provider.GATEWAY, "domain", "worker-x-80-local.hiclaw.io", {"name": "x"}, "Worker/x")
    backend = rec.backend()
    try:
        assert backend.delete(gone) is Outcome.UNCHANGED  # the console answers 502 NotFoundException
        assert backend.delete(objs(rec)["consumer"]) is Outcome.UNCHANGED  # GET: 404 with an empty body
        assert backend.delete(objs(rec)["ai-route-grant"]) is Outcome.UNCHANGED
    finally:
        backend.close()
    assert ("DELETE", "/v1/domains/worker-x-80-local.hiclaw.io") in fake.requests


def test_a_grant_on_a_route_that_does_not_exist_is_refused_by_name(rec: Reconciler, fake: FakeHigress) -> None:
    o = objs(rec)
    del fake.data["ai_routes"][QWEN]
    backend = rec.backend()
    try:
        with pytest.raises(PermanentError, match=f"the AI route '{QWEN}' does not exist on the gateway"):
            backend.apply(o["ai-route-grant"], "create", None, rec.secrets.resolve)
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"items": []}, "list consumers (observe): the console's answer has no `data` envelope"),
        (b"<html>proxy error</html>", "list consumers (observe): the Higress console answered HTTP 200 with "
                                      "something that is not JSON"),
        ({"success": True, "data": {"name": "x"}}, "list consumers (observe): the console's `data` is not a list"),
        ({"success": True, "data": [{"name": "x", "credentials": "nope"}]}, None),
    ],
    ids=["no-envelope", "not-json", "data-not-a-list", "odd-credentials"],
)
def test_answers_the_api_does_not_describe_are_named(rec: Reconciler, fake: FakeHigress, body: Any,
                                                     expected: str | None) -> None:
    fake.fail("GET", "/v1/consumers", 200, times=1, body=body)
    backend = rec.backend()
    try:
        if expected is None:  # a consumer whose credentials are not a list is simply not ours
            assert backend.observe(EVERYTHING) == {}
        else:
            with pytest.raises(UnexpectedAnswer) as caught:
                backend.observe(EVERYTHING)
            assert str(caught.value).startswith(expected)
    finally:
        backend.close()


def test_wrong_console_password_is_a_precise_permanent_error(fake: FakeHigress, tmp_path: Path) -> None:
    pw = tmp_path / "wrong"
    pw.write_text("not-the-password")
    backend = fast(GatewayBackend(BackendContext(settings=GatewaySettings(console_url=fake.url,
                                                                          password_file=str(pw)))))
    try:
        with pytest.raises(PermanentError, match=r"refused gateway\.username and its password"):
            backend.observe(EVERYTHING)
    finally:
        backend.close()


def test_settings_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"gateway\.console_url is not set"):
        GatewayBackend(BackendContext(settings=GatewaySettings()))
    with pytest.raises(PermanentError, match=r"gateway\.password_env or gateway\.password_file"):
        GatewayBackend(BackendContext(settings=GatewaySettings(console_url="http://127.0.0.1:9")))


def test_a_refused_connection_is_transient_and_named(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("pw")
    backend = fast(GatewayBackend(BackendContext(settings=GatewaySettings(console_url="http://127.0.0.1:9",
                                                                          password_file=str(pw)))))
    backend.http.attempts = 2
    try:
        with pytest.raises(TransientError, match="list consumers \\(observe\\): ConnectError talking to the Higress"):
            backend.observe(EVERYTHING)
    finally:
        backend.close()


def test_no_key_or_password_reaches_a_log_line(rec: Reconciler, fake: FakeHigress,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A whole pass and a failing one, every logger at DEBUG (httpx and httpcore included)."""
    caplog.set_level("DEBUG")
    assert rec.apply(worker("gwtest-alice"), worker("gwtest-bob"))[1].ok
    fake.fail("POST", "/v1/consumers", 500, times=100)
    failed = rec.apply(worker("gwtest-alice"), worker("gwtest-carol"))[1]
    assert not failed.ok
    secrets = [*rec.issued(), fake.password]
    count = sum(1 for s in secrets if s in caplog.text)
    assert len(rec.issued()) == 3 and caplog.text and count == 0


@pytest.mark.parametrize("path", ["/v1/consumers", f"/v1/ai/routes/{QWEN}", "/v1/mcpServer/consumers",
                                  "/v1/domains", "/v1/service-sources", "/v1/routes"])
def test_a_write_whose_answer_is_lost_is_read_again_not_repeated_blind(rec: Reconciler, fake: FakeHigress,
                                                                       path: str) -> None:
    """The console carried the write out and the connection dropped before its answer (a restart, a proxy):
    the step reads again and finds its work done — one record, no 409 loop, no duplicate."""
    rec.site.ensure_mcp_server("gwtest-github")
    fake.fail("PUT" if path.endswith(QWEN) or "mcpServer" in path else "POST", path, LOST, times=1)
    org = worker("gwtest-web", expose=[{"port": 8000}], mcpServers=[{"name": "gh", "url": rec.mcp_url()}])
    run = rec.apply(org)[1]
    assert_ok(run)
    assert [f.times for f in fake.faults] == [0], "the write was carried out and its answer lost"
    assert pending(rec.plan(org)) == []
    assert rec.key_is_ours("worker-gwtest-web")
    assert rec.site.route_allowed(QWEN).count("worker-gwtest-web") == 1
    assert rec.site.mcp_allowed("gwtest-github").count("worker-gwtest-web") == 1


def test_without_a_secret_store_only_the_names_asked_about_are_taken_as_ours(rec: Reconciler,
                                                                             fake: FakeHigress) -> None:
    o = objs(rec)
    backend = rec.backend()
    try:
        backend.apply(o["consumer"], "create", None, rec.secrets.resolve)
        backend.apply(o["ai-route-grant"], "create", None, rec.secrets.resolve)
    finally:
        backend.close()
    rec.site.grant_by_hand(QWEN, rec.site.plant_consumer("gwtest-partner"))
    blind = fast(GatewayBackend(BackendContext(settings=rec.settings)))  # an offline look: no secret store
    try:
        seen = blind.observe(Scope({"consumer": frozenset(), "ai-route-grant": frozenset({o["ai-route-grant"].name})}))
    finally:
        blind.close()
    assert set(seen) == {o["consumer"].key, o["ai-route-grant"].key}  # never the partner nor its grant
