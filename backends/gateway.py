"""The gateway backend: agents' key-auth consumers, their AI-route and MCP grants, and exposed ports on Higress.

Provider `gateway`, as compiled by gitops/compile/gateway.py (SPEC §3.5); docs/gateway.md is the operator's
view. Everything goes through the Higress console's REST API (`gateway_http.ConsoleHTTP`), one request at a
time per object, retried in one place.

**Consumers** (`consumer/<name>`, owned): `worker-<rt>` or `manager`, one key-auth credential (BEARER) whose
key comes from the secret store. The console keeps no label or annotation on a consumer, so ownership is
proved by the key: a consumer is ours when its key-auth value is the key our secret store holds for that name.
Anything else under our name is someone else's — never listed, changed or deleted (a create fails saying so).
The key is never observed: an observed consumer shows its credential's type and source only.

**Grants** (`ai-route-grant/<route>:<consumer>`, `mcp-grant/<server>:<consumer>`, shared records): one
entry of a route's `authConfig.allowedConsumers` or an MCP server's allowed consumers. Applying adds only
that consumer, deleting removes only it; every other name on the record stays (other agents', and consumers
someone granted by hand). An AI route is versioned: the grant reads it, changes the list and writes the
whole route back with the version it read; a 409 (someone wrote in between) runs the step again from the
read. MCP servers have an add / remove API per consumer and no versions. Only entries naming one of *our*
consumers are listed. Routes and MCP servers themselves are not created here: a grant on one that does not
exist fails, naming it.

**Exposed ports** (`domain`, `service-source`, `route`, owned): created with POST, changed with PUT (with the
version read), deleted with DELETE. These records carry no owner either; ours are those named by the
compiler's scheme (`worker-<name>-<port>`, `worker-<name>-<port>-local.hiclaw.io`).

Nothing records a hash on the console: observations are compared with the desired spec (`spec_matches`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from backends.gateway_http import DEFAULT_TIMEOUT, MISSING, ConsoleHTTP, UnexpectedAnswer, q, sub, text_list
from gitops.objects import ManagedObject, Provider, make_key
from gitops.providers.protocol import (
    ApplyResult,
    BackendContext,
    Observed,
    Outcome,
    Ownership,
    PermanentError,
    Resolve,
    Scope,
    TypeTraits,
)
from gitops.settings.load import optional_secret
from gitops.settings.model import GatewaySettings

__all__ = ["GatewayBackend"]

CONSUMER, AI_GRANT, MCP_GRANT = "consumer", "ai-route-grant", "mcp-grant"
DOMAIN, SOURCE, ROUTE = "domain", "service-source", "route"
EXPOSE_PREFIX = "worker-"
_SHARED = TypeTraits(ownership=Ownership.SHARED)


def key_secret(consumer: str) -> str:
    """The secret-store name of a consumer's key (gitops.compile.identities.gateway_key, without the scheme)."""
    return f"gateway/{consumer}/key"


class GatewayBackend:
    """Consumers, grants and exposed ports on one Higress console (see the module docstring)."""

    provider = Provider.GATEWAY
    types: tuple[str, ...] = (CONSUMER, AI_GRANT, MCP_GRANT, DOMAIN, SOURCE, ROUTE)
    traits: Mapping[str, TypeTraits] = {AI_GRANT: _SHARED, MCP_GRANT: _SHARED}

    def __init__(self, ctx: BackendContext | GatewaySettings | None = None, client: Any = None) -> None:
        settings = ctx.settings if isinstance(ctx, BackendContext) else ctx
        self.settings = settings if isinstance(settings, GatewaySettings) else GatewaySettings()
        self.ctx = ctx if isinstance(ctx, BackendContext) else BackendContext(settings=self.settings)
        if not self.settings.console_url:
            raise PermanentError("gateway.console_url is not set: the gateway backend needs the Higress console's "
                                 "address")
        password = optional_secret(self.settings.password_env, self.settings.password_file, key="gateway.password")
        if not password:
            raise PermanentError("gateway.password_env or gateway.password_file must give the Higress console "
                                 "admin's password")
        if ":" in self.settings.username or ":" in password:
            raise PermanentError("the Higress console reads HTTP Basic credentials split on ':': neither "
                                 "gateway.username nor its password may contain one")
        http = client if client is not None else self.ctx.client(
            timeout=DEFAULT_TIMEOUT, auth=(self.settings.username, password))
        self.http = ConsoleHTTP(self.settings.console_url, http)

    # Observation ------------------------------------------------------------------------------------------

    def observe(self, scope: Scope) -> dict[str, Observed]:
        wanted = {t for t in self.types if t in scope.names}  # one list call per type asked for, no more
        out: dict[str, Observed] = {}
        ours: set[str] = set()
        if wanted & {CONSUMER, AI_GRANT, MCP_GRANT}:
            consumers = self.http.items("/v1/consumers", "list consumers (observe)")
            named = set(scope.names.get(CONSUMER, ())) | {
                n.partition(":")[2] for t in (AI_GRANT, MCP_GRANT) for n in scope.names.get(t, ())}
            for item in consumers:
                if self._owned(item, named):
                    ours.add(str(item["name"]))
                    if CONSUMER in wanted:
                        seen = _consumer_seen(item, "list consumers (observe)")
                        out[seen.key] = seen
        if AI_GRANT in wanted:
            for route in self.http.items("/v1/ai/routes", "list AI routes (observe)"):
                name = str(route.get("name", ""))
                allowed = text_list(sub(route, "authConfig", "list AI routes").get("allowedConsumers"),
                                    "list AI routes (observe)", "allowedConsumers")
                for consumer in sorted(ours.intersection(allowed)):
                    seen = _grant_seen(AI_GRANT, "route", name, consumer, str(route.get("version") or ""))
                    out[seen.key] = seen
        if MCP_GRANT in wanted:
            for server in self.http.items("/v1/mcpServer", "list MCP servers (observe)"):
                name = str(server.get("name", ""))
                allowed = text_list(sub(server, "consumerAuthInfo", "list MCP servers").get("allowedConsumers"),
                                    "list MCP servers (observe)", "allowedConsumers")
                for consumer in sorted(ours.intersection(allowed)):
                    seen = _grant_seen(MCP_GRANT, "server", name, consumer)
                    out[seen.key] = seen
        for type_, path, read in ((DOMAIN, "/v1/domains", _domain_spec), (SOURCE, "/v1/service-sources",
                                  _source_spec), (ROUTE, "/v1/routes", _route_spec)):
            if type_ in wanted:
                asked = scope.names.get(type_) or frozenset()  # these records carry no owner: stay with our names
                for item in self.http.items(path, f"list {type_}s (observe)"):
                    name = str(item.get("name", ""))
                    if name.startswith(EXPOSE_PREFIX) and (not asked or name in asked):
                        key = make_key(Provider.GATEWAY, type_, name)
                        out[key] = Observed(key, read(item), None, fingerprint=str(item.get("version") or ""))
        if scope.exact:
            out = {k: v for k, v in out.items() if scope.wants(k)}
        return dict(sorted(out.items()))

    def _owned(self, consumer: Mapping[str, Any], named: Iterable[str] = ()) -> bool:
        """Whether a consumer is ours: its key-auth key is the one our secret store holds for its name. Without
        a secret store (an offline look) there is no proof: the names the engine asked about are taken as ours."""
        name = consumer.get("name")
        if not isinstance(name, str) or not name:
            return False
        if self.ctx.secrets is None:
            return name in set(named)
        try:
            key = self.ctx.secrets.get(key_secret(name))
        except KeyError:  # no key stored under this name (SecretMissing): we never made it
            return False
        return bool(key) and key in _key_values(consumer)

    # Changes ----------------------------------------------------------------------------------------------

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        if action not in ("create", "update", "replace"):
            raise PermanentError(f"{obj.key}: unknown action {action!r}")
        if obj.provider is not Provider.GATEWAY or obj.type not in self.types:
            raise PermanentError(f"{obj.key} is not served by the gateway backend ({', '.join(self.types)})")
        # Each step reads, then writes what is missing, and is retried whole: a write whose answer was lost (or
        # a 409) is followed by a fresh read, never by the same write sent blind again.
        if obj.type == CONSUMER:
            return ApplyResult(self.http.retrying(lambda: self._apply_consumer(obj, resolve)))
        if obj.type == AI_GRANT:
            return ApplyResult(self.http.retrying(lambda: self._route_grant(obj, add=True)))
        if obj.type == MCP_GRANT:
            return ApplyResult(self.http.retrying(lambda: self._mcp_grant(obj, add=True)))
        return ApplyResult(self.http.retrying(lambda: self._apply_expose(obj)))

    def delete(self, obj: ManagedObject) -> Outcome:
        if obj.type == CONSUMER:
            return self._delete_consumer(obj)
        if obj.type == AI_GRANT:
            outcome: Outcome = self.http.retrying(lambda: self._route_grant(obj, add=False))
            return outcome
        if obj.type == MCP_GRANT:
            revoked: Outcome = self.http.retrying(lambda: self._mcp_grant(obj, add=False))
            return revoked
        if obj.type in (DOMAIN, SOURCE, ROUTE):
            path = f"{_PATHS[obj.type]}/{q(obj.name)}"
            gone = self.http.call("DELETE", path, f"delete {obj.type} {obj.name}")
            return Outcome.UNCHANGED if gone is MISSING else Outcome.DELETED
        raise PermanentError(f"{obj.key} is not served by the gateway backend ({', '.join(self.types)})")

    def close(self) -> None:
        self.http.close()

    # Consumers --------------------------------------------------------------------------------------------

    def _apply_consumer(self, obj: ManagedObject, resolve: Resolve) -> Outcome:
        what = f"write consumer {obj.name}"
        credential = resolve(obj.spec).get("credential")
        if not isinstance(credential, Mapping) or not isinstance(credential.get("key"), str) or not credential["key"]:
            raise PermanentError(f"{obj.key}: the spec has no credential key to write")
        wanted = _credential(credential)
        found = self.http.get(f"/v1/consumers/{q(obj.name)}", f"read consumer {obj.name}", retry=False)
        if found is None:
            self.http.once("POST", "/v1/consumers", what, {"name": obj.name, "credentials": [wanted]})
            return Outcome.CREATED
        if str(credential["key"]) not in _key_values(found):
            raise PermanentError(f"{obj.key}: a consumer named {obj.name!r} exists on the gateway with a key this "
                                 "reconciler did not issue; it is someone else's and is left alone")
        current = [c for c in found.get("credentials") or [] if isinstance(c, dict)]
        if current == [wanted]:
            return Outcome.UNCHANGED
        self.http.once("PUT", f"/v1/consumers/{q(obj.name)}", what, {**found, "credentials": [wanted]})
        return Outcome.CONFIGURED

    def _delete_consumer(self, obj: ManagedObject) -> Outcome:
        found = self.http.get(f"/v1/consumers/{q(obj.name)}", f"read consumer {obj.name}")
        if found is None:
            return Outcome.UNCHANGED
        if not self._owned(found, [obj.name]):
            raise PermanentError(f"{obj.key}: the consumer {obj.name!r} on the gateway is not ours (its key is not "
                                 "the one this reconciler issued); it is left alone")
        gone = self.http.call("DELETE", f"/v1/consumers/{q(obj.name)}", f"delete consumer {obj.name}")
        return Outcome.UNCHANGED if gone is MISSING else Outcome.DELETED

    # Grants -----------------------------------------------------------------------------------------------

    def _route_grant(self, obj: ManagedObject, *, add: bool) -> Outcome:
        """One read-modify-write of an AI route's allowed consumers (run again from the read on a 409)."""
        route, consumer = _grant_target(obj, "route")
        path = f"/v1/ai/routes/{q(route)}"
        found = self.http.once("GET", path, f"read AI route {route}")
        if found is MISSING:
            if not add:
                return Outcome.UNCHANGED
            raise PermanentError(f"{obj.key}: the AI route {route!r} does not exist on the gateway (gateway.routes "
                                 "names it; routes are made in Higress, not by this reconciler)")
        if not isinstance(found, dict):
            raise UnexpectedAnswer(f"read AI route {route}: the console answered with something not an object")
        auth = sub(found, "authConfig", f"read AI route {route}")
        allowed = text_list(auth.get("allowedConsumers"), f"read AI route {route}", "allowedConsumers")
        if (consumer in allowed) is add:
            return Outcome.UNCHANGED
        if add:
            auth = {"enabled": True, "allowedCredentialTypes": ["key-auth"], **auth,
                    "allowedConsumers": [*allowed, consumer]}
        else:
            auth = {**auth, "allowedConsumers": [c for c in allowed if c != consumer]}
        verb = "grant" if add else "revoke"
        self.http.once("PUT", path, f"{verb} {consumer} on AI route {route}", {**found, "authConfig": auth})
        return Outcome.CREATED if add else Outcome.DELETED

    def _mcp_grant(self, obj: ManagedObject, *, add: bool) -> Outcome:
        server, consumer = _grant_target(obj, "server")
        found = self.http.get(f"/v1/mcpServer/{q(server)}", f"read MCP server {server}", retry=False)
        if found is None:
            if not add:
                return Outcome.UNCHANGED
            raise PermanentError(f"{obj.key}: the MCP server {server!r} does not exist on the gateway (an "
                                 "mcpServers URL names it; MCP servers are made in Higress, not by this reconciler)")
        allowed = text_list(sub(found, "consumerAuthInfo", f"read MCP server {server}").get("allowedConsumers"),
                            f"read MCP server {server}", "allowedConsumers")
        if (consumer in allowed) is add:
            return Outcome.UNCHANGED
        body = {"mcpServerName": server, "consumers": [consumer]}
        if add:
            self.http.once("PUT", "/v1/mcpServer/consumers", f"grant {consumer} on MCP server {server}", body)
            return Outcome.CREATED
        gone = self.http.once("DELETE", "/v1/mcpServer/consumers", f"revoke {consumer} on MCP server {server}", body)
        return Outcome.UNCHANGED if gone is MISSING else Outcome.DELETED

    # Exposed ports ----------------------------------------------------------------------------------------

    def _apply_expose(self, obj: ManagedObject) -> Outcome:
        path = _PATHS[obj.type]
        found = self.http.get(f"{path}/{q(obj.name)}", f"read {obj.type} {obj.name}", retry=False)
        body = _WRITERS[obj.type](obj.name, obj.spec)
        if found is None:
            self.http.once("POST", path, f"create {obj.type} {obj.name}", body)
            return Outcome.CREATED
        if _READERS[obj.type](found) == dict(obj.spec):
            return Outcome.UNCHANGED
        merged = {**found, **body}  # keeps the version read and fields the console added
        self.http.once("PUT", f"{path}/{q(obj.name)}", f"update {obj.type} {obj.name}", merged)
        return Outcome.CONFIGURED


# Shapes: the console's records ↔ the compiler's specs -------------------------------------------------------


def _key_values(consumer: Mapping[str, Any]) -> set[str]:
    values: set[str] = set()
    for credential in consumer.get("credentials") or []:
        if isinstance(credential, dict) and credential.get("type") == "key-auth":
            values.update(v for v in credential.get("values") or [] if isinstance(v, str))
    return values


def _credential(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Our credential spec → the console's: `param` (header or query name) is the console's `key`."""
    out: dict[str, Any] = {"type": str(spec.get("type") or "key-auth"), "source": str(spec.get("source") or "BEARER")}
    if spec.get("param"):
        out["key"] = str(spec["param"])
    out["values"] = [str(spec["key"])]
    return out


def _consumer_seen(item: Mapping[str, Any], what: str) -> Observed:
    name = str(item["name"])
    keyed = [c for c in item.get("credentials") or [] if isinstance(c, dict) and c.get("type") == "key-auth"]
    if len(keyed) != 1:
        credential: dict[str, Any] = {"credentials": len(keyed)}  # shows as drift: we write exactly one
    else:
        credential = {"type": "key-auth", "source": keyed[0].get("source")}
        if keyed[0].get("key"):
            credential["param"] = keyed[0]["key"]
    key = make_key(Provider.GATEWAY, CONSUMER, name)
    return Observed(key, {"name": name, "credential": credential}, None, fingerprint=str(item.get("version") or ""))


def _grant_seen(type_: str, field: str, record: str, consumer: str, version: str = "") -> Observed:
    key = make_key(Provider.GATEWAY, type_, f"{record}:{consumer}")
    return Observed(key, {field: record, "consumer": consumer}, None, fingerprint=version)


def _grant_target(obj: ManagedObject, field: str) -> tuple[str, str]:
    record, consumer = obj.spec.get(field), obj.spec.get("consumer")
    if not isinstance(record, str) or not record or not isinstance(consumer, str) or not consumer:
        raise PermanentError(f"{obj.key}: a grant's spec needs `{field}` and `consumer`")
    return record, consumer


def _domain_spec(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": item.get("name")}


def _domain_body(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name, "enableHttps": "off"}


def _source_spec(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": item.get("type"), "domain": item.get("domain"), "port": item.get("port"),
            "protocol": item.get("protocol")}


def _source_body(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": spec.get("type", "dns"), "name": name, "domain": spec.get("domain"), "port": spec.get("port"),
            "protocol": spec.get("protocol", "http"), "properties": {}, "authN": {"enabled": False}}


def _route_spec(item: Mapping[str, Any]) -> dict[str, Any]:
    found = item.get("path")
    path: Mapping[str, Any] = found if isinstance(found, dict) else {}
    services = [s for s in item.get("services") or [] if isinstance(s, dict)]
    first = services[0] if len(services) == 1 else {}
    return {"domains": item.get("domains"),
            "path": {"match_type": path.get("matchType"), "match_value": path.get("matchValue")},
            "service": first.get("name"), "port": first.get("port")}


def _route_body(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    path = spec.get("path") or {}
    return {"name": name, "domains": list(spec.get("domains") or []),
            "path": {"matchType": path.get("match_type", "PRE"), "matchValue": path.get("match_value", "/"),
                     "caseSensitive": False},
            "services": [{"name": spec.get("service"), "port": spec.get("port"), "weight": 100}]}


_PATHS = {DOMAIN: "/v1/domains", SOURCE: "/v1/service-sources", ROUTE: "/v1/routes"}
_READERS: Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    DOMAIN: _domain_spec, SOURCE: _source_spec, ROUTE: _route_spec}
_WRITERS: Mapping[str, Callable[[str, Mapping[str, Any]], dict[str, Any]]] = {
    DOMAIN: _domain_body, SOURCE: _source_body, ROUTE: _route_body}
