"""Where the gateway tests run: the contract fake (always) or a real Higress console (`live`, from settings).

A `Site` gives the backend's settings and an admin client that plays "someone else" — consumers and grants
made by hand — through the console's own API, so the same test runs against the fake and a real console.
Live runs: `HICLAW_GITOPS_LIVE_SETTINGS=<settings file with a gateway section> pytest -m live tests/gateway`;
they use names starting with `gwtest-` and remove what they made (AI routes and MCP servers named by a test
must exist on the real console or be creatable with the minimal body used here).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from gitops.settings.load import load_settings, optional_secret
from gitops.settings.model import GatewaySettings

from .fake_higress import FakeHigress

LIVE_ENV = "HICLAW_GITOPS_LIVE_SETTINGS"


class Site:
    def __init__(self, settings: GatewaySettings, password: str, fake: FakeHigress | None) -> None:
        self.settings = settings
        self.fake = fake
        self.admin = httpx.Client(base_url=settings.console_url.rstrip("/"), auth=(settings.username, password),
                                  timeout=30.0)
        self.made: list[tuple[str, str]] = []  # (collection path, name) to remove afterwards (live)

    @classmethod
    def on_fake(cls, tmp: Path) -> Iterator[Site]:
        fake = FakeHigress().start()
        pw = tmp / "console-password"
        pw.write_text(fake.password)
        site = cls(GatewaySettings(console_url=fake.url, password_file=str(pw)), fake.password, fake)
        try:
            yield site
        finally:
            site.admin.close()
            fake.stop()

    @classmethod
    def on_live(cls) -> Iterator[Site]:
        settings, problems = load_settings(os.environ[LIVE_ENV])
        assert settings is not None and settings.gateway is not None, f"{LIVE_ENV}: {len(problems)} problem(s)"
        gateway = settings.gateway
        password = optional_secret(gateway.password_env, gateway.password_file, key="gateway.password") or ""
        site = cls(gateway, password, None)
        try:
            site.sweep()  # what an interrupted earlier run left
            yield site
        finally:
            site.sweep()
            for path, name in reversed(site.made):
                site.admin.delete(f"{path}/{name}")
            site.admin.close()

    def sweep(self) -> None:
        """Remove every `gwtest-` consumer (its grants first: the console refuses a consumer in use) and every
        `gwtest-` exposed-port record, made by a test or by the reconciler under test."""
        mark = "gwtest-"
        for route in self.admin.get("/v1/ai/routes").json().get("data") or []:
            auth = route.get("authConfig") or {}
            allowed = auth.get("allowedConsumers") or []
            if any(mark in c for c in allowed):
                auth["allowedConsumers"] = [c for c in allowed if mark not in c]
                self.admin.put(f"/v1/ai/routes/{route['name']}", json={**route, "authConfig": auth})
        for server in self.admin.get("/v1/mcpServer").json().get("data") or []:
            ours = [c for c in (server.get("consumerAuthInfo") or {}).get("allowedConsumers") or [] if mark in c]
            if ours:
                self.admin.request("DELETE", "/v1/mcpServer/consumers",
                                   json={"mcpServerName": server["name"], "consumers": ours})
        for path in ("/v1/consumers", "/v1/routes", "/v1/service-sources", "/v1/domains"):
            for item in self.admin.get(path).json().get("data") or []:
                if mark in str(item.get("name")):
                    self.admin.delete(f"{path}/{item['name']}")

    def with_routes(self, *routes: Any) -> GatewaySettings:
        return replace(self.settings, routes=tuple(routes))

    # Someone else, by hand ------------------------------------------------------------------------------

    def plant_consumer(self, name: str) -> str:
        """A consumer with a key this reconciler never issued; returns nothing secret to print (a marker)."""
        key = secrets.token_hex(32)
        body = {"name": name, "credentials": [{"type": "key-auth", "source": "BEARER", "values": [key]}]}
        assert self.admin.post("/v1/consumers", json=body).status_code in (200, 201)
        self.made.append(("/v1/consumers", name))
        return name

    def consumer_keys(self, name: str) -> set[str]:
        response = self.admin.get(f"/v1/consumers/{name}")
        if response.status_code == 404:
            return set()
        creds = response.json()["data"].get("credentials") or []
        return {v for c in creds for v in c.get("values") or []}

    def ensure_ai_route(self, name: str) -> None:
        if self.admin.get(f"/v1/ai/routes/{name}").status_code == 200:
            return
        body = {"name": name, "pathPredicate": {"matchType": "PRE", "matchValue": f"/{name}", "caseSensitive": False},
                "upstreams": [{"provider": "gwtest", "weight": 100}],
                "authConfig": {"enabled": True, "allowedCredentialTypes": ["key-auth"], "allowedConsumers": []}}
        assert self.admin.post("/v1/ai/routes", json=body).status_code in (200, 201)
        self.made.append(("/v1/ai/routes", name))

    def route_allowed(self, name: str) -> list[str]:
        route = self.admin.get(f"/v1/ai/routes/{name}").json()["data"]
        return list((route.get("authConfig") or {}).get("allowedConsumers") or [])

    def grant_by_hand(self, route: str, consumer: str) -> None:
        for _ in range(5):
            found = self.admin.get(f"/v1/ai/routes/{route}").json()["data"]
            auth = found.setdefault("authConfig", {})
            auth["allowedConsumers"] = [*(auth.get("allowedConsumers") or []), consumer]
            if self.admin.put(f"/v1/ai/routes/{route}", json=found).status_code == 200:
                return
        raise AssertionError(f"could not grant {consumer} on {route} by hand")

    def ensure_mcp_server(self, name: str) -> None:
        if self.admin.get(f"/v1/mcpServer/{name}").status_code == 200:
            return
        body = {"name": name, "type": "OPEN_API", "consumerAuthInfo": {"type": "key-auth", "enable": True,
                                                                        "allowedConsumers": []}}
        assert self.admin.put("/v1/mcpServer", json=body).status_code in (200, 201, 204)
        self.made.append(("/v1/mcpServer", name))

    def mcp_allowed(self, name: str) -> list[str]:
        server = self.admin.get(f"/v1/mcpServer/{name}").json()["data"]
        return list((server.get("consumerAuthInfo") or {}).get("allowedConsumers") or [])

    def mcp_grant_by_hand(self, server: str, consumer: str) -> None:
        body = {"mcpServerName": server, "consumers": [consumer]}
        assert self.admin.put("/v1/mcpServer/consumers", json=body).status_code in (200, 204)
