"""Gateway (SPEC §3.5): consumers, AI-route grants by model, MCP grants and exposed ports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from gitops.settings.model import GatewaySettings, Route

from .orgs import ALL, compiled, keys, manager, member, openclaw, spec, team, worker

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


def test_default_route_grants_every_consumer_one_entry_each() -> None:
    state = compiled(manager(), worker("alice"))
    assert keys(state, "gateway/ai-route-grant/") == {"default-ai-route:manager", "default-ai-route:worker-alice"}
    grant = state.objects["gateway/ai-route-grant/default-ai-route:worker-alice"]
    assert grant.spec == {"route": "default-ai-route", "consumer": "worker-alice"}
    assert grant.shares == "gateway/ai-route/default-ai-route"
    assert grant.owner == "Worker/alice"
    assert grant.depends_on == ("gateway/consumer/worker-alice",)


def test_consumers_are_granted_exactly_the_routes_serving_their_model() -> None:
    state = compiled(
        worker("alice", model="qwen3.6-plus"), worker("bob", model="claude-sonnet-4-6"), settings=TWO_ROUTES
    )
    assert keys(state, "gateway/ai-route-grant/") == {"qwen:worker-alice", "claude:worker-bob"}
    assert not any("no route" in n for n in (*state.notes, *state.warnings))


def test_changing_the_model_moves_the_grant() -> None:
    before = compiled(worker("alice", model="qwen3.6-plus"), settings=TWO_ROUTES)
    after = compiled(worker("alice", model="claude-sonnet-4-6"), settings=TWO_ROUTES)
    assert keys(before, "gateway/ai-route-grant/") == {"qwen:worker-alice"}
    assert keys(after, "gateway/ai-route-grant/") == {"claude:worker-alice"}
    # The container waits for the grant of its own model's route.
    assert "gateway/ai-route-grant/claude:worker-alice" in after.objects[
        "runtime/container/hiclaw-worker-alice"].depends_on


def test_a_model_no_route_serves_is_a_warning_and_no_grant() -> None:
    state = compiled(worker("alice", model="gpt-5"), settings=TWO_ROUTES)
    assert not keys(state, "gateway/ai-route-grant/")
    warnings = [n for n in state.warnings if "worker-alice" in n]
    assert len(warnings) == 1 and "gpt-5" in warnings[0] and "Worker/alice" in warnings[0]


def test_a_model_no_route_serves_is_warned_about_in_an_offline_plan_too(tmp_path: Path) -> None:
    """Offline plans (pull requests) plan every provider and drop what the settings leave out, but an agent
    whose model no configured route serves is news there too."""
    from gitops import pipeline
    from gitops.plan import baseline
    from gitops.source.files import DirectorySource

    (tmp_path / "alice.yaml").write_text(
        "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata: {name: alice}\nspec: {model: gpt-5}\n")
    read = pipeline.read_org(DirectorySource(tmp_path))
    plan = pipeline.plan(read, TWO_ROUTES, baseline.empty(), all_providers=True)
    assert [w for w in plan.warnings if "gpt-5" in w and "Worker/alice" in w]
    assert not [w for w in plan.warnings if "section in settings" in w]


def test_gateway_mcp_urls_grant_the_consumer_on_the_server() -> None:
    state = compiled(
        manager(mcpServers=[GITHUB]),
        worker("alice", mcpServers=[GITHUB, GITHUB]),
        team("web", workers=(member("dev", mcpServers=[GITHUB]),)),
    )
    assert keys(state, "gateway/mcp-grant/") == {"github:manager", "github:worker-alice", "github:worker-dev"}
    grant = state.objects["gateway/mcp-grant/github:worker-dev"]
    assert grant.spec == {"server": "github", "consumer": "worker-dev"}
    assert grant.shares == "gateway/mcp-server/github"
    assert grant.owner == "Team/web"


def test_removing_an_mcp_entry_removes_its_grant_only() -> None:
    state = compiled(worker("alice", mcpServers=[]), worker("bob", mcpServers=[GITHUB]))
    assert keys(state, "gateway/mcp-grant/") == {"github:worker-bob"}


def test_external_mcp_urls_are_left_alone() -> None:
    servers = [
        {"name": "desk", "url": "https://mcp.example.com/mcp-servers/desk/mcp"},  # other host
        {"name": "odd", "url": "http://aigw-local.hiclaw.io:8080/other/odd"},  # gateway host, not an MCP path
    ]
    assert not keys(compiled(worker("alice", mcpServers=servers)), "gateway/mcp-grant/")


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


def test_agents_are_given_the_agent_facing_gateway_url_never_the_console() -> None:
    gateway = GatewaySettings(console_url="http://127.0.0.1:8001", ai_gateway_url="http://gw.agents.example:8080/")
    state = compiled(worker("alice"), settings=replace(ALL, gateway=gateway))
    provider = openclaw(state, "alice")["models"]["providers"]["hiclaw-gateway"]
    assert provider["baseUrl"] == "http://gw.agents.example:8080/v1"
    container = state.objects["runtime/container/hiclaw-worker-alice"].spec
    assert container["env"]["HICLAW_AI_GATEWAY_URL"] == "http://gw.agents.example:8080/"
    agent_facing = json.dumps([o.spec for o in state.objects.values() if o.provider.value != "gateway"])
    assert "127.0.0.1:8001" not in agent_facing


def test_without_a_gateway_section_nothing_is_provisioned_and_the_plan_says_so() -> None:
    state = compiled(worker("alice"), settings=replace(ALL, gateway=None))
    assert not keys(state, "gateway/")
    assert "gateway: disabled (no `gateway` section in settings)" in state.notes
    assert not [k for k in state.objects["runtime/container/hiclaw-worker-alice"].depends_on if "gateway" in k]
