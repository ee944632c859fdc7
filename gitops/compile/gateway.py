"""Gateway (SPEC §3.5): a key-auth consumer per agent, one grant per agent per AI route and MCP server, exposed ports.

| Object                                          | Spec                                                        |
|-------------------------------------------------|-------------------------------------------------------------|
| `consumer/worker-<rt>` (Manager: `manager`)     | key-auth, source BEARER, key from the secret store          |
| `ai-route-grant/<route>:<consumer>`             | the consumer on a route serving its `model` (shared record) |
| `mcp-grant/<server>:<consumer>`                 | the consumer on a server its `mcpServers` URL names (shared) |
| `domain`, `service-source`, `route`             | per `expose` port, named `worker-<name>-<port>` (CR / member name) |

A grant is owned by its agent and is one *entry* of a shared record (`shares`: `gateway/ai-route/<route>` or
`gateway/mcp-server/<server>`): applying it adds or removes only that consumer, so others' grants on the same
route survive, and a model change is one grant deleted and another created. External MCP URLs (any other
host) are left alone. An agent whose model no configured route serves gets no route grant and a warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from gitops.compile.identities import agent_model, consumer_name, gateway_key, managed
from gitops.objects import ManagedObject, Provider, make_key
from gitops.org import Agent
from gitops.settings.model import GatewaySettings

AI_GRANT = "ai-route-grant"
MCP_GRANT = "mcp-grant"


def consumer_key(agent: Agent) -> str:
    return make_key(Provider.GATEWAY, "consumer", consumer_name(agent))


def grant_name(record: str, consumer: str) -> str:
    """`<route or server>:<consumer>` — the colon appears in neither a Higress route nor a consumer name."""
    return f"{record}:{consumer}"


def route_grant_keys(agent: Agent, gateway: GatewaySettings) -> list[str]:
    """The keys of the agent's AI-route grants: what its container waits for (it never starts unauthorised)."""
    model, consumer = agent_model(agent), consumer_name(agent)
    return [make_key(Provider.GATEWAY, AI_GRANT, grant_name(r.name, consumer)) for r in gateway.routes
            if r.serves(model)]


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


# consumer name, model, gateway MCP servers it names, the owning org resource's ref and its prune flag (strings
# and a bool only: the compile cache keeps these per unit, and a Resource would carry its whole spec along)
Consumer = tuple[str, str, tuple[str, ...], str, bool]


def consumer_objects(agent: Agent) -> list[ManagedObject]:
    """The agent's consumer and the objects of its exposed ports."""
    name = consumer_name(agent)
    credential = {"type": "key-auth", "source": "BEARER", "key": gateway_key(agent)}
    consumer = managed(Provider.GATEWAY, "consumer", name, {"name": name, "credential": credential}, agent.owner)
    return [consumer, *expose_objects(agent)]


def consumer_of(agent: Agent, gateway: GatewaySettings) -> Consumer:
    """What the route and MCP grants need to know of an agent."""
    servers = (gateway_mcp_server(str(s.get("url", "")), gateway) for s in agent.spec.get("mcpServers") or [])
    owner = agent.owner
    prune = owner.annotation("prune") != "disabled"
    return consumer_name(agent), agent_model(agent), tuple(sorted({s for s in servers if s})), owner.ref, prune


def grant_objects(consumers: Iterable[Consumer], gateway: GatewaySettings) -> list[ManagedObject]:
    """Per consumer: a grant on every AI route serving its model, and on every gateway MCP server it names."""
    out: list[ManagedObject] = []
    for name, model, servers, owner, prune in consumers:
        for route in gateway.routes:
            if route.serves(model):
                out.append(_grant(AI_GRANT, "ai-route", route.name, name, {"route": route.name}, owner, prune))
        for server in servers:
            out.append(_grant(MCP_GRANT, "mcp-server", server, name, {"server": server}, owner, prune))
    return out


def unserved(consumers: Iterable[Consumer], gateway: GatewaySettings) -> tuple[str, ...]:
    """A warning per consumer whose model no configured route serves (it is granted no AI route)."""
    return tuple(
        f"gateway: {name} ({owner}) uses model `{model}`, which no route in gateway.routes serves: "
        "it is granted no AI route"
        for name, model, _, owner, _ in consumers
        if not any(r.serves(model) for r in gateway.routes)
    )


def _grant(type_: str, record_type: str, record: str, consumer: str, spec: dict[str, str], owner: str,
           prune: bool) -> ManagedObject:
    needs = (make_key(Provider.GATEWAY, "consumer", consumer),)
    return ManagedObject(Provider.GATEWAY, type_, grant_name(record, consumer), {**spec, "consumer": consumer}, owner,
                         needs, prune, shares=make_key(Provider.GATEWAY, record_type, record))

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
