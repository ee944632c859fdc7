"""Gateway reconciliation end to end (compile → plan against the console → executor → verify), on the contract
fake and, with HICLAW_GITOPS_LIVE_SETTINGS, on a real console (`live`). No key is ever printed: key checks are
booleans and leak checks are counts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.objects import ManagedObject
from gitops.org import Resource
from gitops.providers.conformance import Instrumented, assert_ok, leaked, pending, plan_live, run_plan
from gitops.providers.protocol import Outcome, Scope

from .reconcile import CLAUDE, GITHUB, QWEN, Reconciler, worker
from .site import Site


@pytest.fixture
def rec(site: Site, tmp_path: Path) -> Iterator[Reconciler]:
    r = Reconciler(site, tmp_path / "state")
    yield r
    r.close()


def alice(model: str = "qwen3.6-plus", **spec: object) -> Resource:
    return worker("gwtest-alice", model=model, **spec)


def test_org_provisioned_then_a_second_pass_writes_nothing(rec: Reconciler, site: Site) -> None:
    site.ensure_mcp_server(GITHUB)
    org = (worker("gwtest-alice"), worker("gwtest-bob", model="claude-sonnet-4-6",
                                          mcpServers=[{"name": "gh", "url": rec.mcp_url()}]))
    plan, run = rec.apply(*org)
    assert_ok(run)
    assert len(run.created) == 5  # two consumers, two route grants, one MCP grant
    both = rec.key_is_ours("worker-gwtest-alice") and rec.key_is_ours("worker-gwtest-bob")
    assert both, "the console holds the keys the secret store issued"
    assert "worker-gwtest-alice" in site.route_allowed(QWEN) and "worker-gwtest-alice" not in site.route_allowed(CLAUDE)
    assert "worker-gwtest-bob" in site.route_allowed(CLAUDE) and "worker-gwtest-bob" not in site.route_allowed(QWEN)
    assert "worker-gwtest-bob" in site.mcp_allowed(GITHUB)
    writes = site.fake.writes() if site.fake else 0
    again = rec.plan(*org)
    assert pending(again) == []
    _, second = rec.apply(*org)
    assert_ok(second)
    if site.fake:
        assert site.fake.writes() == writes, "a no-op pass writes nothing"
    count = len(leaked(rec.issued(), plan.to_dict(), run.to_dict(), again.to_dict(), second.to_dict()))
    assert count == 0, "no generated key in a plan or a run's result"


def test_a_model_change_moves_the_grant_and_a_hand_grant_survives(rec: Reconciler, site: Site) -> None:
    partner = site.plant_consumer("gwtest-partner")
    site.grant_by_hand(QWEN, partner)
    assert_ok(rec.apply(alice())[1])
    assert set(site.route_allowed(QWEN)) >= {partner, "worker-gwtest-alice"}
    plan, run = rec.apply(alice("claude-sonnet-4-6"))
    assert_ok(run)
    moved = {(c.action.value, c.key) for c in plan.changes if c.action.value != "noop"}
    assert moved == {("delete", f"gateway/ai-route-grant/{QWEN}:worker-gwtest-alice"),
                     ("create", f"gateway/ai-route-grant/{CLAUDE}:worker-gwtest-alice")}
    assert partner in site.route_allowed(QWEN) and "worker-gwtest-alice" not in site.route_allowed(QWEN)
    assert "worker-gwtest-alice" in site.route_allowed(CLAUDE)
    backend = rec.backend()
    try:
        seen = backend.observe(Scope({"consumer": frozenset(), "ai-route-grant": frozenset()}))
    finally:
        backend.close()
    assert not [k for k in seen if "gwtest-partner" in k], "someone else's consumer and grant are never listed"


def test_an_mcp_entry_removed_revokes_only_that_grant(rec: Reconciler, site: Site) -> None:
    site.ensure_mcp_server(GITHUB)
    partner = site.plant_consumer("gwtest-partner")
    site.mcp_grant_by_hand(GITHUB, partner)
    external = {"name": "desk", "url": "https://mcp.example.com/mcp-servers/desk/mcp"}
    assert_ok(rec.apply(alice(mcpServers=[{"name": "gh", "url": rec.mcp_url()}, external]))[1])
    assert "worker-gwtest-alice" in site.mcp_allowed(GITHUB)
    plan, run = rec.apply(alice(mcpServers=[external]))
    assert_ok(run)
    assert [c.key for c in plan.changes if c.action.value == "delete"] == [
        f"gateway/mcp-grant/{GITHUB}:worker-gwtest-alice"]
    assert site.mcp_allowed(GITHUB) == [partner]


def test_removing_the_agent_revokes_everywhere_then_deletes_its_consumer(rec: Reconciler, site: Site) -> None:
    site.ensure_mcp_server(GITHUB)
    partner = site.plant_consumer("gwtest-partner")
    site.grant_by_hand(QWEN, partner)
    assert_ok(rec.apply(alice(mcpServers=[{"name": "gh", "url": rec.mcp_url()}]))[1])
    plan, run = rec.apply()
    assert_ok(run)
    assert sorted(c.action.value for c in plan.changes) == ["delete"] * 3
    assert "worker-gwtest-alice" not in site.route_allowed(QWEN) + site.mcp_allowed(GITHUB)
    assert site.consumer_keys("worker-gwtest-alice") == set()
    assert site.route_allowed(QWEN) == [partner] and site.consumer_keys(partner)


def test_concurrent_route_edits_converge(rec: Reconciler, site: Site) -> None:
    """Six reconcilers (no executor between them) grant six agents on one route at once: every PUT that lost
    the race gets a 409, reads again and writes again; all six end up granted, someone's hand grant too."""
    partner = site.plant_consumer("gwtest-partner")
    site.grant_by_hand(QWEN, partner)
    agents = [worker(f"gwtest-w{i}") for i in range(6)]
    objs = rec.objects(*agents)
    consumers = [o for o in objs if o.type == "consumer"]
    grants = [o for o in objs if o.type == "ai-route-grant"]
    backend = rec.backend()
    try:
        for obj in consumers:
            backend.apply(obj, "create", None, rec.secrets.resolve)
    finally:
        backend.close()
    errors: list[BaseException] = []

    def grant(obj: ManagedObject) -> None:
        mine = rec.backend()
        try:
            mine.http.attempts = 12
            assert mine.apply(obj, "create", None, rec.secrets.resolve).outcome is Outcome.CREATED
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=grant, args=(g,)) for g in grants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, [str(e) for e in errors]
    assert set(site.route_allowed(QWEN)) == {partner, *(f"worker-gwtest-w{i}" for i in range(6))}


def test_entries_of_one_route_are_applied_one_at_a_time_by_the_executor(rec: Reconciler, site: Site) -> None:
    """The compiled grants name their route in `shares`: the executor never writes one route twice at once,
    and writes the two routes side by side."""
    agents = [worker(f"gwtest-p{i}", model="qwen3.6-plus" if i % 2 else "claude-sonnet-4-6") for i in range(8)]
    objs = rec.objects(*agents)
    assert {o.shares for o in objs if o.type == "ai-route-grant"} == {f"gateway/ai-route/{QWEN}",
                                                                       f"gateway/ai-route/{CLAUDE}"}
    slow = Instrumented(rec.backend(), latency=0.05)
    try:
        plan, creds, live = plan_live(slow, rec.state, rec.secrets, objs)
        assert_ok(run_plan(plan, creds, live, slow, rec.state, rec.secrets, concurrency=8))
        assert slow.overlaps == 0
        assert len(site.route_allowed(QWEN)) == 4 and len(site.route_allowed(CLAUDE)) == 4
    finally:
        slow.close()


def test_expose_creates_updates_and_removes_domain_source_and_route(rec: Reconciler, site: Site) -> None:
    web = "gwtest-web"
    plan, run = rec.apply(worker(web, expose=[{"port": 8000}]))
    assert_ok(run)
    created = {c.key for c in plan.changes if c.action.value == "create"}
    base = f"worker-{web}-8000"
    assert {f"gateway/domain/{base}-local.hiclaw.io", f"gateway/service-source/{base}",
            f"gateway/route/{base}"} <= created
    route = site.admin.get(f"/v1/routes/{base}").json()["data"]
    assert route["domains"] == [f"{base}-local.hiclaw.io"] and route["services"][0]["name"] == f"{base}.dns"
    plan, run = rec.apply(worker(web, expose=[{"port": 8000, "protocol": "grpc"}]))
    assert_ok(run)
    assert [c.key for c in plan.changes if c.action.value == "update"] == [f"gateway/service-source/{base}"]
    assert site.admin.get(f"/v1/service-sources/{base}").json()["data"]["protocol"] == "grpc"
    plan, run = rec.apply(worker(web))
    assert_ok(run)
    for path in (f"/v1/routes/{base}", f"/v1/service-sources/{base}", f"/v1/domains/{base}-local.hiclaw.io"):
        assert site.admin.get(path).status_code == 404
    assert pending(rec.plan(worker(web))) == []
