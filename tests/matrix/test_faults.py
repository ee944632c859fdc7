"""Faults on a real Synapse: a homeserver restarting mid-apply, a storm of 429 answers, malformed answers, a
half-created room, and a reconciler killed with SIGKILL during room setup — each converging to the exact rooms,
with no duplicate and no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from mxsite import ROOT, Inspector, Site, counts

from deploy.synapse import Synapse
from gitops.apply.executor import ApplyOptions

HERE = Path(__file__).resolve().parent
WORKER = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: {name}\nspec:\n  model: qwen3.6-plus\n"


def exact_and_unique(site: Site, inspector: Inspector) -> None:
    """Every room once, with exactly the desired members (what a fresh plan compares), and a no-op re-plan."""
    rooms = inspector.rooms()
    assert all(len(found) == 1 for found in rooms.values()), {k: len(v) for k, v in rooms.items() if len(v) > 1}
    assert len(rooms) == 16
    again = site.reconcile()
    assert counts(again) == {}, [(c.key, c.reason) for c in again.plan.changes if c.action.value != "noop"] \
        if again.plan else None


def test_homeserver_restart_mid_apply(fresh_homeserver: Synapse, tmp_path: Path) -> None:
    site = Site(fresh_homeserver, tmp_path)
    try:
        done = threading.Event()

        def restart_when_busy() -> None:
            while site.backend.http.writes < 25 and not done.is_set():
                time.sleep(0.02)
            fresh_homeserver.stop()  # SIGTERM mid-apply, then up again on the same database
            fresh_homeserver.start()
            fresh_homeserver.wait_ready()

        restarter = threading.Thread(target=restart_when_busy)
        restarter.start()
        try:
            first = site.reconcile(check=False)
        finally:
            done.set()
            restarter.join()
        assert site.backend.http.retried > 0, "the restart was not noticed"
        assert first.ok, (first.phase, first.error, [(s.key, s.message) for s in first.run.failed] if first.run else ())
        exact_and_unique(site, Inspector(fresh_homeserver))
    finally:
        site.close()


class Storm(httpx.BaseTransport):
    """In front of the real homeserver: every `every`-th request is answered 429 M_LIMIT_EXCEEDED with a short
    retry_after_ms instead of reaching it (what a rate-limited Synapse answers)."""

    def __init__(self, every: int = 3) -> None:
        self.inner = httpx.HTTPTransport()
        self.every = every
        self.seen = 0
        self.limited = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.seen += 1
            limit = self.seen % self.every == 0
            self.limited += limit
        if limit:
            body = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 20}
            return httpx.Response(429, json=body, request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_storm_of_429_answers(fresh_homeserver: Synapse, tmp_path: Path) -> None:
    storm = Storm()
    site = Site(fresh_homeserver, tmp_path, http=lambda **kw: httpx.Client(transport=storm, **kw))
    try:
        started = time.monotonic()
        site.reconcile()
        assert storm.limited > 50, storm.limited
        assert time.monotonic() - started < 120
        exact_and_unique(site, Inspector(fresh_homeserver))
    finally:
        site.close()


def test_a_rate_limit_that_never_ends_is_a_bounded_failure(fresh_homeserver: Synapse, tmp_path: Path) -> None:
    storm = Storm(every=1)
    site = Site(fresh_homeserver, tmp_path, http=lambda **kw: httpx.Client(transport=storm, **kw), retries=2)
    try:
        started = time.monotonic()
        result = site.reconcile(check=False)
        assert time.monotonic() - started < 30, "retries must be bounded"
        assert result.phase == "error"
        assert "cannot observe matrix: " in result.error and "HTTP 429 M_LIMIT_EXCEEDED" in result.error, result.error
        assert "Traceback" not in result.error
    finally:
        site.close()


class Garbage(httpx.BaseTransport):
    """Answers one kind of request with `body` (status 200) and passes the rest to the real homeserver."""

    def __init__(self, path: str, body: bytes) -> None:
        self.inner = httpx.HTTPTransport()
        self.path, self.body = path, body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(self.path):
            return httpx.Response(200, content=self.body, request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("/sync", b"<html>gateway</html>",
     "sync (observe): the homeserver answered HTTP 200 with something that is not JSON"),
    ("/sync", b"[1, 2]", "sync (observe): the homeserver answered with a list, not a JSON object"),
    ("/sync", b'{"rooms": {"join": []}}', "sync (observe): `rooms.join` is a list, not an object"),
    ("/createRoom", b'{"room": 1}', "create room #hiclaw-worker-mal-3:localhost: the answer has no room_id"),
], ids=["html", "list", "wrong-shape", "create-without-id"])
def test_malformed_answers_are_named(homeserver: Synapse, tmp_path: Path, path: str, body: bytes,
                                     expected: str, request: pytest.FixtureRequest) -> None:
    """Each case on its own one-Worker org (`mal-<n>`), so cases sharing the server never see each other's rooms."""
    org = tmp_path / "one"
    org.mkdir()
    number = request.node.callspec.indices["path"]
    (org / "w.yaml").write_text(WORKER.format(name=f"mal-{number}"), encoding="utf-8")
    site = Site(homeserver, tmp_path, org, http=lambda **kw: httpx.Client(transport=Garbage(path, body), **kw))
    try:
        result = site.reconcile(check=False)
        messages = [result.error] + [s.message for s in (result.run.failed if result.run else ())]
        assert any(expected in m for m in messages), messages
        assert not any("Traceback" in m for m in messages)
    finally:
        site.close()


def test_half_created_room_is_repaired_not_duplicated(fresh_homeserver: Synapse, tmp_path: Path) -> None:
    """A createRoom refused after it claimed the alias (room version 12: the creator listed in power levels —
    deps §2) leaves a half-built room under our alias; the pass finds it by alias and completes it."""
    token = fresh_homeserver.actor_token()
    with pytest.raises(Exception, match=r"must not appear in content\.users"):
        fresh_homeserver.call("POST", "/_matrix/client/v3/createRoom", {
            "room_alias_name": "hiclaw-manager-default", "preset": "private_chat",
            "power_level_content_override": {"users": {fresh_homeserver.actor: 100}}}, token=token)
    inspector = Inspector(fresh_homeserver)
    half = fresh_homeserver.call("GET", "/_matrix/client/v3/directory/room/%23hiclaw-manager-default%3Alocalhost",
                                 token=token)["room_id"]
    site = Site(fresh_homeserver, tmp_path)
    try:
        site.reconcile()
        exact_and_unique(site, inspector)
        assert inspector.rooms()["hiclaw-manager-default"][0].room_id == half
    finally:
        site.close()


def test_kill_9_during_room_setup_then_a_pass(fresh_homeserver: Synapse, tmp_path: Path) -> None:
    site = Site(fresh_homeserver, tmp_path)
    inspector = Inspector(fresh_homeserver)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"org": str(site.org), "state_dir": site.settings.state_dir,
                                  "matrix": fresh_homeserver.settings()}), encoding="utf-8")
    log = (tmp_path / "child.log").open("wb")
    child = subprocess.Popen([sys.executable, str(HERE / "reconcile_child.py"), str(config)], cwd=ROOT,
                             stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(inspector.rooms()) < 3 and child.poll() is None:
            time.sleep(0.05)
        assert child.poll() is None, "the reconciler finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        log.close()
        if child.poll() is None:
            child.kill()
    created = len(inspector.rooms())
    assert 3 <= created < 16, created
    try:
        site.reconcile()
        exact_and_unique(site, inspector)
    finally:
        site.close()


def test_a_pass_with_concurrency_one_counts_requests(fresh_homeserver: Synapse, tmp_path: Path) -> None:
    """Requests per object of a cold apply, the same with any concurrency (recorded in docs/performance.md)."""
    site = Site(fresh_homeserver, tmp_path)
    try:
        from gitops.pipeline import reconcile
        from gitops.source.files import DirectorySource

        result = reconcile(DirectorySource(site.org), site.settings, store=site.store, secrets=site.secrets,
                           backends={site.backend.provider: site.backend},
                           options=ApplyOptions(concurrency={"matrix": 1}))
        assert result.ok
        http = site.backend.http
        per_object = (http.reads + http.writes + http.logins) / 33
        assert per_object < 10, per_object
    finally:
        site.close()
