"""Schema tests: each kind's JSON Schema accepts upstream-valid documents and rejects the rest precisely."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).parent.parent / "schemas"
KINDS = ("Worker", "Team", "Human", "Manager")

Doc = dict[str, Any]
DELETE = object()  # mutation value: remove the key instead of setting it


@cache
def load_schema(kind: str) -> Doc:
    schema: Doc = json.loads((SCHEMA_DIR / f"{kind.lower()}.schema.json").read_text(encoding="utf-8"))
    return schema


@cache
def validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(kind), format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(kind: str, doc: Doc) -> list[tuple[str, tuple[str | int, ...]]]:
    """Every schema error as (validator keyword, instance path)."""
    found = validator(kind).iter_errors(doc)
    return sorted((str(e.validator), tuple(e.absolute_path)) for e in found)


def parse_path(dotted: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split(".") if part)


def mutated(doc: Doc, dotted: str, value: object) -> Doc:
    """A deep copy of doc with the value at a dotted path set (or removed, for DELETE)."""
    *parents, last = parse_path(dotted)
    out: Doc = json.loads(json.dumps(doc))  # unlike deepcopy, never keeps the fixtures' shared parts
    target: Any = out
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return out


def document(kind: str, name: str, spec: Doc) -> Doc:
    return {"apiVersion": "hiclaw.io/v1beta1", "kind": kind, "metadata": {"name": name}, "spec": spec}


# --------------------------------------------------------------------------- valid documents

MCP_SERVERS = [
    {"name": "github", "url": "https://gateway.example.com/mcp-servers/github/mcp"},
    {"name": "search", "url": "https://gateway.example.com/mcp-servers/search/sse", "transport": "sse"},
]
REMOTE_SKILLS = [
    {
        "source": "nacos://nacos.example.com:8848/public",
        "authType": "nacos",
        "skills": [{"name": "code-review", "version": "1.2.0"}, {"name": "triage", "label": "stable"}],
    }
]
CHANNEL_POLICY = {
    "groupAllowExtra": ["@john:matrix.example.com", "jane"],
    "groupDenyExtra": ["bob"],
    "dmAllowExtra": ["jane"],
    "dmDenyExtra": ["@spam:matrix.example.com"],
}
ACCESS_ENTRIES = [
    {
        "service": "object-storage",
        "permissions": ["read", "write", "list", "delete"],
        "scope": {"bucket": "hiclaw-storage", "prefixes": ["agents/${self.name}/*", "shared/*"]},
    },
    {"service": "ai-gateway", "scope": {"gatewayId": "gw-1", "resources": ["default-ai-route"]}},
]
PERSONA = {"identity": "- Name: Alice", "soul": "# Alice\nMethodical.", "agents": "## Behaviour\n- Be brief."}
AGENT_EXTRAS = {"env": {"LOG_LEVEL": "debug", "_FEATURE_1": "on"}, "labels": {"cost-center": "rnd"}}
WORKER_FIELDS = {
    "model": "claude-sonnet-4-6",
    "runtime": "copaw",
    "image": "registry.example.com/hiclaw/copaw-worker:1.1.2",
    **PERSONA,
    "skills": ["github-operations", "git-delegation"],
    "remoteSkills": REMOTE_SKILLS,
    "mcpServers": MCP_SERVERS,
    "package": "file://./packages/alice.zip",
    "expose": [{"port": 3000}, {"port": 50051, "protocol": "grpc"}],
    "channelPolicy": CHANNEL_POLICY,
    "state": "Sleeping",
    "accessEntries": [*ACCESS_ENTRIES, {"service": "ai-registry", "permissions": ["read"]}],
    **AGENT_EXTRAS,
}

MINIMAL: dict[str, Doc] = {
    "Worker": document("Worker", "alice", {"model": "qwen3.6-plus"}),
    "Team": document("Team", "alpha-team", {"leader": {"name": "alpha-lead"}}),
    "Human": document("Human", "john", {"displayName": "John Doe", "permissionLevel": 2}),
    "Manager": document("Manager", "default", {"model": "qwen3.6-plus"}),
}

MAXIMAL: dict[str, Doc] = {
    "Worker": document("Worker", "alice", {**WORKER_FIELDS, "workerName": "alice-rt", "containerManaged": False}),
    "Team": document(
        "Team",
        "alpha-team",
        {
            "description": "Full-stack development team",
            "teamName": "alpha",
            "peerMentions": False,
            "channelPolicy": CHANNEL_POLICY,
            "admin": {"name": "pm-zhang", "matrixUserId": "@pm-zhang:matrix.example.com"},
            "humanMembers": [{"name": "jane", "matrixUserId": "@jane:matrix.example.com", "role": "coordinator"}],
            "leader": {
                "name": "alpha-lead",
                "workerName": "alpha-lead-rt",
                "model": "claude-sonnet-4-6",
                **PERSONA,
                "package": "nacos://nacos.example.com/public/leader.zip",
                "remoteSkills": REMOTE_SKILLS,
                "mcpServers": MCP_SERVERS,
                "heartbeat": {"enabled": True, "every": "30m"},
                "workerIdleTimeout": "12h",
                "state": "Running",
                "channelPolicy": CHANNEL_POLICY,
                "accessEntries": ACCESS_ENTRIES,
                **AGENT_EXTRAS,
            },
            "workers": [
                {"name": "alpha-dev", "workerName": "alpha-dev-rt", **WORKER_FIELDS},
                {"name": "alpha-qa"},
            ],
        },
    ),
    "Human": document(
        "Human",
        "john",
        {
            "displayName": "John Doe",
            "username": "john-doe",
            "email": "john@example.com",
            "permissionLevel": 3,
            "accessibleTeams": [],
            "accessibleWorkers": ["alice", "devops-bob"],
            "note": "Frontend lead",
        },
    ),
    "Manager": document(
        "Manager",
        "default",
        {
            "model": "qwen3.6-plus",
            "runtime": "copaw",
            "image": "registry.example.com/hiclaw/hiclaw-manager-copaw:1.1.2",
            "soul": "# Manager",
            "agents": "# AGENTS overrides",
            "skills": ["worker-management"],
            "mcpServers": MCP_SERVERS,
            "package": "https://example.com/manager.zip",
            "state": "Running",
            "config": {"heartbeatInterval": "15m", "workerIdleTimeout": "720m", "notifyChannel": "admin-dm"},
            "accessEntries": ACCESS_ENTRIES,
            **AGENT_EXTRAS,
        },
    ),
}
for _doc in MAXIMAL.values():
    _doc["metadata"] |= {
        "namespace": "default",
        "labels": {"app.kubernetes.io/part-of": "org"},
        "annotations": {"gitops.hiclaw.io/prune": "disabled"},
    }
    _doc["status"] = {"phase": "Running", "anything": {"goes": ["here"]}}

# The minimal example of hiclaw-upstream.md §1.1.
CRD_EXAMPLE = document(
    "Worker", "alice", {"model": "qwen3.6-plus", "runtime": "copaw", "skills": ["github-operations"]}
)


def accepted(case: str, kind: str, dotted: str, value: object) -> object:
    """A minimal document with one addition or change that must stay valid."""
    return pytest.param(kind, mutated(MINIMAL[kind], dotted, value), id=f"{kind}-{case}")


VALID = [
    *(pytest.param(kind, MINIMAL[kind], id=f"{kind}-minimal") for kind in KINDS),
    *(pytest.param(kind, MAXIMAL[kind], id=f"{kind}-maximal") for kind in KINDS),
    pytest.param("Worker", CRD_EXAMPLE, id="Worker-crd-example"),
    accepted("name-63-chars", "Worker", "metadata.name", "a" * 63),
    accepted("name-digit-first", "Worker", "metadata.name", "0-agent"),
    accepted("empty-status", "Human", "status", {}),
    accepted(
        "remote-source-without-port",
        "Worker",
        "spec.remoteSkills",
        [{"source": "nacos://n/ns", "skills": [{"name": "x"}]}],
    ),
    accepted("skill-containing-nacos", "Worker", "spec.skills", ["my-nacos://helper"]),
    accepted("member-role-omitted", "Team", "spec.humanMembers", [{"name": "jane"}]),
    accepted("empty-workers", "Team", "spec.workers", []),
    accepted("manager-empty-env", "Manager", "spec.env", {}),
]


# --------------------------------------------------------------------------- invalid documents
# Each case mutates one spot of a maximal document and expects exactly one (keyword, path) error.


def rejected(case: str, kind: str, dotted: str, value: object, keyword: str, *, at: str | None = None) -> object:
    doc = mutated(MAXIMAL[kind], dotted, value)
    return pytest.param(kind, doc, keyword, parse_path(dotted if at is None else at), id=f"{kind}-{case}")


def unknown(case: str, kind: str, dotted: str) -> object:
    """An unexpected key; additionalProperties reports it on the enclosing object."""
    return rejected(case, kind, dotted, "x", "additionalProperties", at=dotted.rpartition(".")[0])


def missing(case: str, kind: str, dotted: str) -> object:
    """A removed required key; required reports it on the enclosing object."""
    return rejected(case, kind, dotted, DELETE, "required", at=dotted.rpartition(".")[0])


INVALID = [
    # envelope
    unknown("top-level-field", "Worker", "data"),
    missing("spec", "Worker", "spec"),
    missing("metadata-name", "Team", "metadata.name"),
    unknown("metadata-field", "Human", "metadata.uid"),
    rejected("api-version", "Worker", "apiVersion", "hiclaw.io/v1", "const"),
    rejected("kind", "Worker", "kind", "Team", "const"),
    rejected("status-not-object", "Worker", "status", "Running", "type"),
    rejected("name-uppercase", "Worker", "metadata.name", "Alice", "pattern"),
    rejected("name-too-long", "Worker", "metadata.name", "a" * 64, "maxLength"),
    rejected("name-leading-dash", "Manager", "metadata.name", "-default", "pattern"),
    rejected("name-underscore", "Human", "metadata.name", "john_doe", "pattern"),
    rejected("label-not-string", "Worker", "metadata.labels.tier", 1, "type"),
    # Worker
    missing("model", "Worker", "spec.model"),
    unknown("spec-field", "Worker", "spec.replicas"),
    unknown("mcp-field", "Worker", "spec.mcpServers.0.headers"),
    rejected("mcp-plain-strings", "Worker", "spec.mcpServers", ["github"], "type", at="spec.mcpServers.0"),
    missing("mcp-url", "Worker", "spec.mcpServers.0.url"),
    rejected("mcp-transport", "Worker", "spec.mcpServers.0.transport", "ws", "enum"),
    rejected("runtime", "Worker", "spec.runtime", "docker", "enum"),
    rejected("state", "Worker", "spec.state", "Paused", "enum"),
    rejected("container-managed-string", "Worker", "spec.containerManaged", "no", "type"),
    rejected("expose-port-string", "Worker", "spec.expose.0.port", "3000", "type"),
    rejected("expose-protocol", "Worker", "spec.expose.1.protocol", "tcp", "enum"),
    rejected("skill-nacos", "Worker", "spec.skills.0", "nacos://x/y", "not"),
    rejected("remote-skills-empty", "Worker", "spec.remoteSkills.0.skills", [], "minItems"),
    rejected("remote-source-no-namespace", "Worker", "spec.remoteSkills.0.source", "nacos://host", "pattern"),
    unknown("remote-skill-field", "Worker", "spec.remoteSkills.0.skills.0.tag"),
    # propertyNames reports the failing key's keyword (pattern) on the map itself.
    rejected("env-key-dash", "Worker", "spec.env.MY-VAR", "x", "pattern", at="spec.env"),
    rejected("env-value-number", "Worker", "spec.env.PORT", 8080, "type"),
    unknown("channel-policy-field", "Worker", "spec.channelPolicy.allowExtra"),
    rejected("access-service", "Worker", "spec.accessEntries.0.service", "kms", "enum"),
    rejected("access-permission", "Worker", "spec.accessEntries.0.permissions.0", "admin", "enum"),
    rejected("worker-name", "Worker", "spec.workerName", "Alice", "pattern"),
    # Team
    missing("leader", "Team", "spec.leader"),
    missing("leader-name", "Team", "spec.leader.name"),
    unknown("leader-runtime", "Team", "spec.leader.runtime"),
    unknown("leader-image", "Team", "spec.leader.image"),
    unknown("leader-skills", "Team", "spec.leader.skills"),
    unknown("leader-expose", "Team", "spec.leader.expose"),
    unknown("leader-heartbeat-field", "Team", "spec.leader.heartbeat.cron"),
    rejected("leader-name", "Team", "spec.leader.name", "Alpha Lead", "pattern"),
    unknown("worker-container-managed", "Team", "spec.workers.1.containerManaged"),
    rejected("worker-name", "Team", "spec.workers.1.name", "alpha_qa", "pattern"),
    rejected("worker-skill-nacos", "Team", "spec.workers.0.skills.1", "nacos://n/ns", "not"),
    rejected("worker-env-key", "Team", "spec.workers.0.env.1X", "x", "pattern", at="spec.workers.0.env"),
    rejected("member-role", "Team", "spec.humanMembers.0.role", "owner", "enum"),
    unknown("admin-field", "Team", "spec.admin.email"),
    rejected("team-name-too-long", "Team", "spec.teamName", "t" * 64, "maxLength"),
    rejected("peer-mentions-string", "Team", "spec.peerMentions", "yes", "type"),
    # Human
    missing("display-name", "Human", "spec.displayName"),
    missing("permission-level", "Human", "spec.permissionLevel"),
    rejected("permission-level-4", "Human", "spec.permissionLevel", 4, "maximum"),
    rejected("permission-level-0", "Human", "spec.permissionLevel", 0, "minimum"),
    rejected("permission-level-string", "Human", "spec.permissionLevel", "2", "type"),
    rejected("email", "Human", "spec.email", "john.example.com", "format"),
    rejected("team-name", "Human", "spec.accessibleTeams", ["Alpha Team"], "pattern", at="spec.accessibleTeams.0"),
    unknown("spec-field", "Human", "spec.password"),
    # Manager
    missing("model", "Manager", "spec.model"),
    rejected("hermes", "Manager", "spec.runtime", "hermes", "enum"),
    rejected("access-ai-registry", "Manager", "spec.accessEntries.0.service", "ai-registry", "enum"),
    unknown("config-field", "Manager", "spec.config.heartbeat"),
    unknown("remote-skills", "Manager", "spec.remoteSkills"),
    unknown("expose", "Manager", "spec.expose"),
]


# --------------------------------------------------------------------------- tests


def subschemas(node: object) -> Iterator[Doc]:
    """Every JSON object inside a schema document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from subschemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from subschemas(value)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    schema = load_schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://hiclaw.io/schemas/gitops/{kind.lower()}.schema.json"
    assert schema["title"]
    assert schema["required"] == ["apiVersion", "kind", "metadata", "spec"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_property_is_described(kind: str) -> None:
    undescribed = [
        name
        for node in subschemas(load_schema(kind))
        for name, prop in node.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize("kind", KINDS)
def test_objects_with_fixed_properties_are_closed(kind: str) -> None:
    open_objects = [
        sorted(node["properties"])
        for node in subschemas(load_schema(kind))
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_objects == []


@pytest.mark.parametrize("kind", KINDS)
def test_refs_are_local_and_resolve(kind: str) -> None:
    schema = load_schema(kind)
    refs = {node["$ref"] for node in subschemas(schema) if "$ref" in node}
    assert refs
    for ref in refs:
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref


@pytest.mark.parametrize(("kind", "doc"), VALID)
def test_valid_documents(kind: str, doc: Doc) -> None:
    assert errors(kind, doc) == []


@pytest.mark.parametrize(("kind", "doc", "keyword", "path"), INVALID)
def test_invalid_documents(kind: str, doc: Doc, keyword: str, path: tuple[str | int, ...]) -> None:
    assert errors(kind, doc) == [(keyword, path)]
