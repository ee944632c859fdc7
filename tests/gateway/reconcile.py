"""A reconciler for gateway tests: org resources compiled, planned against the console, applied by the executor.

Assertions about keys compare inside a local boolean, so a failure prints `False`, never a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from backends.gateway import GatewayBackend
from gitops.apply.result import RunResult
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.compile import compile_org
from gitops.objects import DesiredState, ManagedObject, Provider
from gitops.org import Org, Resource
from gitops.plan.model import Plan
from gitops.providers.conformance import plan_live, run_plan
from gitops.providers.protocol import BackendContext
from gitops.settings.model import GatewaySettings, Route, Settings

from .harness import fast
from .site import Site

QWEN, CLAUDE = "gwtest-qwen", "gwtest-claude"
ROUTES = (Route(QWEN, ("qwen3.6-plus",)), Route(CLAUDE, ("claude-sonnet-4-6",)))
GITHUB = "gwtest-github"
ALL = Settings().with_all_providers()


def worker(name: str, **spec: Any) -> Resource:
    return Resource("Worker", name, {"model": "qwen3.6-plus", **spec}, {}, f"workers/{name}.yaml", 0, 1)


def compiled(*resources: Resource, settings: Settings) -> DesiredState:
    return compile_org(Org({r.name: r for r in resources if r.kind == "Worker"}, {}, {}, {}), settings)


class Reconciler:
    def __init__(self, site: Site, state_dir: Path, routes: Sequence[Route] = ROUTES) -> None:
        self.site = site
        self.settings: GatewaySettings = site.with_routes(*routes)
        self.state = StateStore(state_dir)
        self.secrets = SecretStore(state_dir, key="")
        for route in routes:
            site.ensure_ai_route(route.name)

    def mcp_url(self, server: str = GITHUB) -> str:
        return f"{self.settings.ai_gateway_url}/mcp-servers/{server}/mcp"

    def backend(self) -> GatewayBackend:
        return fast(GatewayBackend(BackendContext(settings=self.settings, secrets=self.secrets)))

    def objects(self, *resources: Resource) -> list[ManagedObject]:
        state = compiled(*resources, settings=replace(ALL, gateway=self.settings))
        return [o for o in state.objects.values() if o.provider is Provider.GATEWAY]

    def plan(self, *resources: Resource) -> Plan:
        backend = self.backend()
        try:
            return plan_live(backend, self.state, self.secrets, self.objects(*resources))[0]
        finally:
            backend.close()

    def apply(self, *resources: Resource) -> tuple[Plan, RunResult]:
        backend = self.backend()
        try:
            plan, creds, live = plan_live(backend, self.state, self.secrets, self.objects(*resources))
            return plan, run_plan(plan, creds, live, backend, self.state, self.secrets, concurrency=4)
        finally:
            backend.close()

    def key_is_ours(self, consumer: str) -> bool:
        """Whether the console holds exactly the key our secret store issued for `consumer`."""
        stored = self.secrets.peek(f"gateway/{consumer}/key")
        return stored is not None and self.site.consumer_keys(consumer) == {stored}

    def issued(self) -> list[str]:
        return [v for n in self.secrets.names() if (v := self.secrets.peek(n))]

    def close(self) -> None:
        self.secrets.close()
        self.state.close()
