"""example-org through the whole pipeline (`gitops.pipeline.reconcile`) with the gateway provider on the contract
fake: every agent a consumer with the key the secret store issued, granted on the routes of its model and on
the GitHub MCP server where its mcpServers name it; the plan warns about a model no route serves; a second
pass changes and writes nothing; editing the org moves exactly the grants it should."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.gateway import GatewayBackend
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import Provider
from gitops.pipeline import ReconcileResult, reconcile
from gitops.providers.protocol import BackendContext
from gitops.settings.model import Route, Settings
from gitops.source.files import DirectorySource

from .harness import fast
from .site import Site

EXAMPLE = Path(__file__).resolve().parents[2] / "example-org"
ROUTES = (Route("qwen", ("qwen3.6-plus",)), Route("claude", ("claude-sonnet-4-6",)))


class Org:
    def __init__(self, site: Site, root: Path) -> None:
        self.site = site
        self.dir = root / "org"
        shutil.copytree(EXAMPLE, self.dir)
        for route in ROUTES:
            site.ensure_ai_route(route.name)
        site.ensure_mcp_server("github")
        self.settings = Settings(state_dir=str(root / "state"), gateway=site.with_routes(*ROUTES))
        self.store = StateStore(self.settings.state_dir)
        self.secrets = SecretStore(self.settings.state_dir, key="")

    def reconcile(self) -> ReconcileResult:
        assert self.settings.gateway is not None
        backend = fast(GatewayBackend(BackendContext(settings=self.settings.gateway, secrets=self.secrets)))
        try:
            result = reconcile(DirectorySource(self.dir), self.settings, store=self.store, secrets=self.secrets,
                               backends={Provider.GATEWAY: backend})
        finally:
            backend.close()
        failed = [(s.key, s.message) for s in result.run.failed] if result.run else []
        assert result.ok, (result.phase, result.error, failed)
        return result

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.dir / relative
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def close(self) -> None:
        self.secrets.close()
        self.store.close()


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    for site in Site.on_fake(tmp_path):
        o = Org(site, tmp_path)
        yield o
        o.close()


def test_example_org_on_the_gateway(org: Org) -> None:
    first = org.reconcile()
    assert first.plan is not None
    consumers = [c for c in first.plan.changes if c.key.startswith("gateway/consumer/")]
    assert len(consumers) == 12
    names = [c.key.rsplit("/", 1)[1] for c in consumers]
    ours = all(org.site.consumer_keys(n) == {org.secrets.peek(f"gateway/{n}/key")} for n in names)
    assert ours, "every consumer holds the key the secret store issued"
    granted = set(org.site.route_allowed("qwen")) | set(org.site.route_allowed("claude"))
    assert granted == set(names) - unserved(first)
    assert set(org.site.mcp_allowed("github")) == {"manager", "worker-release-manager", "worker-fe-dev"}
    assert org.site.fake is not None
    writes = org.site.fake.writes()
    second = org.reconcile()
    assert second.plan is not None and not [c for c in second.plan.changes if c.action.value != "noop"]
    assert org.site.fake.writes() == writes


def unserved(result: ReconcileResult) -> set[str]:
    """Consumers the plan warns about: their model is served by no route."""
    assert result.plan is not None
    return {w.split(" ")[1] for w in result.plan.warnings if w.startswith("gateway: ") and "no route" in w}


def test_editing_the_org_moves_exactly_its_grants(org: Org) -> None:
    org.reconcile()
    org.edit("workers/docs-writer.yaml", "model: qwen3.6-plus", "model: claude-sonnet-4-6")
    org.edit("workers/support-desk.yaml", "model: qwen3.6-plus", "model: gpt-5-mini")
    org.edit("workers/release-manager.yaml", "- name: github", "- name: github-gone")  # rename only: still granted
    moved = org.reconcile()
    assert moved.plan is not None
    changes = {(c.action.value, c.key) for c in moved.plan.changes if c.action.value != "noop"}
    assert changes == {
        ("delete", "gateway/ai-route-grant/qwen:worker-docs-writer"),
        ("create", "gateway/ai-route-grant/claude:worker-docs-writer"),
        ("delete", "gateway/ai-route-grant/qwen:worker-support-bot"),
    }
    assert unserved(moved) == {"worker-support-bot"}  # support-desk runs as support-bot
    assert "worker-docs-writer" in org.site.route_allowed("claude")
    assert not {"worker-docs-writer", "worker-support-bot"} & set(org.site.route_allowed("qwen"))
    # Without a route grant the container would never start: the runtime is not configured here, so the
    # dependency is checked where it is compiled (tests/compile/test_compile_runtime.py).
