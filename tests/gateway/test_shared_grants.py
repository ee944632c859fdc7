"""Grants are entries of shared records (AI routes, MCP servers): the cases of the conformance suite's
`SharedRecordSuite`, on both grant types. It does not fit as it stands (see test_conformance.py): a grant is
ours only when its consumer is, so each case here first makes the consumer and then looks at grants only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.objects import ManagedObject
from gitops.providers.protocol import Outcome, Scope

from .reconcile import GITHUB, QWEN, Reconciler, worker
from .site import Site


@pytest.fixture(params=["ai-route-grant", "mcp-grant"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rec(site: Site, tmp_path: Path) -> Iterator[Reconciler]:
    r = Reconciler(site, tmp_path / "state")
    site.ensure_mcp_server(GITHUB)
    yield r
    r.close()


class Grants:
    """Our consumers made, their grants of one kind at hand; the record's entries read through the console."""

    def __init__(self, rec: Reconciler, kind: str) -> None:
        self.rec, self.kind = rec, kind
        self.record = QWEN if kind == "ai-route-grant" else GITHUB
        self.backend = rec.backend()

    def ours(self, name: str) -> ManagedObject:
        objs = rec_objs(self.rec, name)
        self.backend.apply(objs["consumer"], "create", None, self.rec.secrets.resolve)
        return objs[self.kind]

    def entries(self) -> list[str]:
        site = self.rec.site
        return site.route_allowed(self.record) if self.kind == "ai-route-grant" else site.mcp_allowed(self.record)

    def by_hand(self, consumer: str) -> None:
        site = self.rec.site
        site.plant_consumer(consumer)
        if self.kind == "ai-route-grant":
            site.grant_by_hand(self.record, consumer)
        else:
            site.mcp_grant_by_hand(self.record, consumer)

    def listed(self) -> set[str]:
        return set(self.backend.observe(Scope({self.kind: frozenset()})))


def rec_objs(rec: Reconciler, name: str) -> dict[str, ManagedObject]:
    mcp = [{"name": "gh", "url": rec.mcp_url()}]
    return {o.type: o for o in rec.objects(worker(name, mcpServers=mcp))}


@pytest.fixture
def grants(rec: Reconciler, kind: str) -> Iterator[Grants]:
    g = Grants(rec, kind)
    yield g
    g.backend.close()


def test_someone_elses_entry_survives_create_and_delete(grants: Grants) -> None:
    grants.by_hand("gwtest-someone")
    mine = grants.ours("gwtest-mine")
    assert grants.backend.apply(mine, "create", None, grants.rec.secrets.resolve).outcome is Outcome.CREATED
    assert set(grants.entries()) == {"gwtest-someone", "worker-gwtest-mine"}
    assert grants.listed() == {mine.key}, "someone else's entry is never listed"
    assert grants.backend.apply(mine, "update", None, grants.rec.secrets.resolve).outcome is Outcome.UNCHANGED
    assert grants.backend.delete(mine) is Outcome.DELETED
    assert grants.entries() == ["gwtest-someone"]
    assert grants.listed() == set()


def test_a_record_someone_else_filled_is_adopted(grants: Grants) -> None:
    grants.by_hand("gwtest-first")
    grants.by_hand("gwtest-second")
    objs = [grants.ours(f"gwtest-join-{i}") for i in range(2)]
    for obj in objs:
        assert grants.backend.apply(obj, "create", None, grants.rec.secrets.resolve).outcome is Outcome.CREATED
    assert grants.listed() == {o.key for o in objs}
    assert {"gwtest-first", "gwtest-second"} <= set(grants.entries())


def test_delete_removes_only_our_entry_and_twice_is_success(grants: Grants) -> None:
    grants.by_hand("gwtest-theirs")
    a, b = grants.ours("gwtest-del-a"), grants.ours("gwtest-del-b")
    for obj in (a, b):
        grants.backend.apply(obj, "create", None, grants.rec.secrets.resolve)
    assert grants.backend.delete(a) is Outcome.DELETED
    assert grants.listed() == {b.key}
    assert grants.backend.delete(a) is Outcome.UNCHANGED
    assert set(grants.entries()) == {"gwtest-theirs", "worker-gwtest-del-b"}


def test_an_entry_naming_a_consumer_that_is_not_ours_is_never_listed(grants: Grants) -> None:
    """Someone granted a consumer under one of our names, with their own key: it is theirs, not ours."""
    grants.by_hand("worker-gwtest-lookalike")
    assert grants.listed() == set()
