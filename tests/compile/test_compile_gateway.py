"""Gateway (SPEC §3.5): consumers, AI-route grants by model, MCP grants and exposed ports."""

from __future__ import annotations

from dataclasses import replace

from gitops.settings.model import GatewaySettings, Route

from .orgs import ALL, compiled, keys, manager, member, spec, team, worker

TWO_ROUTES = replace(
    ALL, gateway=GatewaySettings(routes=(Route("qwen", ("qwen3.6-plus",)), Route("claude", ("claude-sonnet-4-6",))))
)
GITHUB = {"name": "github", "url": "http://aigw-local.hiclaw.io:8080/mcp-servers/github/mcp"}


def test_a_key_auth_consumer_per_agent() -> None:
    state = compiled(manager(), worker("alice", workerName="al"), team("web"))
    assert keys(state, "gateway/consumer/") == {"manager", "worker-al", "worker-lead", "worker-dev"}
    assert spec(state, "gateway/consumer/worker-al") == {
        "name": "worker-al",
        "credential": {"type": "key-auth", "source": "BEARER", "key": "secret://gateway/worker-al/key"},
    }
    assert state.objects["gateway/consumer/worker-dev"].owner == "Team/web"


def test_default_route_serves_every_consumer() -> None:
    state = compiled(manager(), worker("alice"))
    assert spec(state, "gateway/ai-route/default-ai-route") == {"allowed_consumers": ["manager", "worker-alice"]}
    assert state.objects["gateway/ai-route/default-ai-route"].depends_on == (
        "gateway/consumer/manager",
        "gateway/consumer/worker-alice",
    )


def test_consumers_are_granted_exactly_the_routes_serving_their_model() -> None:
    state = compiled(
        worker("alice", model="qwen3.6-plus"), worker("bob", model="claude-sonnet-4-6"), settings=TWO_ROUTES
    )
    assert spec(state, "gateway/ai-route/qwen") == {"allowed_consumers": ["worker-alice"]}
    assert spec(state, "gateway/ai-route/claude") == {"allowed_consumers": ["worker-bob"]}


def test_changing_the_model_moves_the_grant() -> None:
    state = compiled(
        worker("alice", model="claude-sonnet-4-6"), worker("bob", model="claude-sonnet-4-6"), settings=TWO_ROUTES
    )
    assert spec(state, "gateway/ai-route/qwen") == {"allowed_consumers": []}
    assert spec(state, "gateway/ai-route/claude") == {"allowed_consumers": ["worker-alice", "worker-bob"]}


def test_gateway_mcp_urls_grant_the_consumer_on_the_server() -> None:
    state = compiled(
        manager(mcpServers=[GITHUB]),
        worker("alice", mcpServers=[GITHUB]),
        team("web", workers=(member("dev", mcpServers=[GITHUB]),)),
    )
    assert spec(state, "gateway/mcp-server/github") == {"consumers": ["manager", "worker-alice", "worker-dev"]}
    assert state.objects["gateway/mcp-server/github"].owner == "org"


def test_external_mcp_urls_are_left_alone() -> None:
    servers = [
        {"name": "desk", "url": "https://mcp.example.com/mcp-servers/desk/mcp"},  # other host
        {"name": "odd", "url": "http://aigw-local.hiclaw.io:8080/other/odd"},  # gateway host, not an MCP path
    ]
    assert not keys(compiled(worker("alice", mcpServers=servers)), "gateway/mcp-server/")


def test_expose_creates_domain_service_source_and_route_per_port() -> None:
    state = compiled(worker("alice", workerName="al", expose=[{"port": 8000}, {"port": 9000, "protocol": "grpc"}]))
    assert keys(state, "gateway/domain/") == {"worker-alice-8000-local.hiclaw.io", "worker-alice-9000-local.hiclaw.io"}
    assert spec(state, "gateway/service-source/worker-alice-9000") == {
        "type": "dns",
        "domain": "alice.local",
        "port": 9000,
        "protocol": "grpc",
    }
    route = state.objects["gateway/route/worker-alice-8000"]
    assert route.spec == {
        "domains": ["worker-alice-8000-local.hiclaw.io"],
        "path": {"match_type": "PRE", "match_value": "/"},
        "service": "worker-alice-8000.dns",
        "port": 8000,
    }
    assert route.depends_on == (
        "gateway/domain/worker-alice-8000-local.hiclaw.io",
        "gateway/service-source/worker-alice-8000",
    )
    assert route.owner == "Worker/alice"


def test_team_worker_expose_is_named_by_member_name() -> None:
    state = compiled(team("web", workers=(member("ui", workerName="ui-rt", expose=[{"port": 6006}]),)))
    assert spec(state, "gateway/service-source/worker-ui-6006")["domain"] == "ui.local"
    assert state.objects["gateway/route/worker-ui-6006"].owner == "Team/web"
