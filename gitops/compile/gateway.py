"""Gateway (SPEC §3.5): a key-auth consumer per agent, AI-route grants by model, MCP grants, exposed ports.

| Object                                      | Spec                                                            |
|---------------------------------------------|-----------------------------------------------------------------|
| `consumer/worker-<rt>` (Manager: `manager`) | key-auth, source BEARER, key from the secret store              |
| `ai-route/<route>` (every configured route) | allowed_consumers: consumers whose model the route serves       |
| `mcp-server/<server>`                       | consumers with an `mcpServers` URL `<gateway>/mcp-servers/<server>/…` |
| `domain`, `service-source`, `route`         | per `expose` port, named `worker-<name>-<port>` (CR / member name) |

External MCP URLs (any other host) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from gitops.compile.identities import agent_model, consumer_name, gateway_key, managed
from gitops.objects import ManagedObject, Provider, make_key
from gitops.org import Agent
from gitops.settings.model import GatewaySettings


def consumer_key(agent: Agent) -> str:
    return make_key(Provider.GATEWAY, "consumer", consumer_name(agent))


def gateway_mcp_server(url: str, gateway: GatewaySettings) -> str | None:
    """The Higress MCP server a URL names (`<ai gateway host>/mcp-servers/<server>/…`), or None if external."""
    try:
        target, ours = urlsplit(url), urlsplit(gateway.ai_gateway_url)
    except ValueError:
        return None
    if target.netloc.lower() != ours.netloc.lower():
        return None
    parts = target.path.split("/")
    if len(parts) > 2 and parts[0] == "" and parts[1] == "mcp-servers" and parts[2]:
        return parts[2]
    return None


Consumer = tuple[str, str, tuple[str, ...]]  # consumer name, model, gateway MCP servers it names


def consumer_objects(agent: Agent) -> list[ManagedObject]:
    """The agent's consumer and the objects of its exposed ports."""
    name = consumer_name(agent)
    credential = {"type": "key-auth", "source": "BEARER", "key": gateway_key(agent)}
    consumer = managed(Provider.GATEWAY, "consumer", name, {"name": name, "credential": credential}, agent.owner)
    return [consumer, *expose_objects(agent)]


def consumer_of(agent: Agent, gateway: GatewaySettings) -> Consumer:
    """What the route and MCP grants need to know of an agent."""
    servers = (gateway_mcp_server(str(s.get("url", "")), gateway) for s in agent.spec.get("mcpServers") or [])
    return consumer_name(agent), agent_model(agent), tuple(s for s in servers if s)


def grant_objects(consumers: Iterable[Consumer], gateway: GatewaySettings) -> list[ManagedObject]:
    """Every AI route with the consumers whose model it serves, every gateway MCP server with its consumers."""
    out: list[ManagedObject] = []
    by_model: dict[str, list[str]] = {}
    by_server: dict[str, list[str]] = {}
    for name, model, servers in consumers:
        by_model.setdefault(model, []).append(name)
        for server in servers:
            by_server.setdefault(server, []).append(name)
    for route in gateway.routes:
        allowed = sorted({c for model, names in by_model.items() if route.serves(model) for c in names})
        out.append(_grant("ai-route", route.name, {"allowed_consumers": allowed}, allowed))
    for server, names in sorted(by_server.items()):
        consumers_of = sorted(set(names))
        out.append(_grant("mcp-server", server, {"consumers": consumers_of}, consumers_of))
    return out


def _grant(type_: str, name: str, spec: Mapping[str, object], consumers: Iterable[str]) -> ManagedObject:
    needs = [make_key(Provider.GATEWAY, "consumer", c) for c in consumers]
    return managed(Provider.GATEWAY, type_, name, spec, None, needs)


def expose_objects(agent: Agent) -> list[ManagedObject]:
    """Per exposed port: a domain, a DNS service source `<name>.local`, and a route joining them."""
    out: list[ManagedObject] = []
    for entry in agent.spec.get("expose") or []:
        port = int(entry["port"])
        protocol = str(entry.get("protocol") or "http")
        base = f"worker-{agent.name}-{port}"
        domain = f"{base}-local.hiclaw.io"
        source = {"type": "dns", "domain": f"{agent.name}.local", "port": port, "protocol": protocol}
        route = {
            "domains": [domain],
            "path": {"match_type": "PRE", "match_value": "/"},
            "service": f"{base}.dns",
            "port": port,
        }
        needs = [make_key(Provider.GATEWAY, "domain", domain), make_key(Provider.GATEWAY, "service-source", base)]
        out.append(managed(Provider.GATEWAY, "domain", domain, {"name": domain}, agent.owner))
        out.append(managed(Provider.GATEWAY, "service-source", base, source, agent.owner))
        out.append(managed(Provider.GATEWAY, "route", base, route, agent.owner, needs))
    return out
