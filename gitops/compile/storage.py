"""Object storage (SPEC §3.4): the bucket, each agent's files, shared prefixes, users and least-privilege policies.

| Object key under the bucket          | When                                                  |
|--------------------------------------|-------------------------------------------------------|
| `agents/<rt>/openclaw.json`          | always (channels, gateway, model; hiclaw-upstream §3.3) |
| `agents/<rt>/SOUL.md`                | `soul` (copaw/hermes: inline `identity` prepended)    |
| `agents/<rt>/AGENTS.md`              | `agents`                                              |
| `agents/<rt>/IDENTITY.md`            | openclaw with `identity`                              |
| `agents/<rt>/mcporter-servers.json`  | `mcpServers` (gateway URLs carry the consumer key)    |
| `agents/<rt>/skills.json`            | `skills` or `remoteSkills`                            |
| `teams/<team-rt>/shared/.keep`, `shared/knowledge/.keep`, `shared/tasks/.keep` | always        |

Each agent's area `agents/<rt>/` is one more object (`storage/area/agents/<rt>`): deleting it archives it.

With an identity API (`storage.identity`: `aws-iam` or `minio-admin`): user `<rt>` carrying its policy `worker-<rt>`
— list on `agents/<rt>/`, `shared/` (+ `teams/<team-rt>/` for team members, + `manager/` for the Manager),
read/write/delete on their objects and nothing else. Every prefix ends with a slash: `agents/fe` would also
match `agents/fe-dev/…`. The user and its policy are one object: an inline policy lives and dies with its user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitops.compile.allowlists import AllowList
from gitops.compile.gateway import gateway_mcp_server
from gitops.compile.identities import (
    Chart,
    Identities,
    Team,
    agent_model,
    agent_prefix,
    agent_runtime,
    gateway_key,
    managed,
    matrix_token,
    storage_secret,
)
from gitops.objects import ManagedObject, Provider, make_key, spec_digest, spec_hash
from gitops.org import Agent, Role
from gitops.settings.model import Settings

DEFAULT_HOMESERVER = "http://matrix-local.hiclaw.io:8080"
JSON = "application/json"
MARKDOWN = "text/markdown"
EMPTY = "application/octet-stream"

# Known model parameters (upstream generator.go): context window, max tokens, accepts images.
MODEL_PRESETS: dict[str, tuple[int, int, bool]] = {
    "gpt-5.3-codex": (400000, 128000, True),
    "gpt-5-mini": (400000, 128000, True),
    "gpt-5-nano": (400000, 128000, True),
    "claude-opus-4-6": (1000000, 128000, True),
    "claude-sonnet-4-6": (1000000, 64000, True),
    "claude-haiku-4-5": (200000, 64000, True),
    "qwen3.6-plus": (200000, 64000, True),
    "qwen3.5-plus": (200000, 64000, True),
    "deepseek-chat": (256000, 128000, False),
    "deepseek-reasoner": (256000, 128000, False),
    "kimi-k2.5": (256000, 128000, True),
    "glm-5": (200000, 128000, False),
    "MiniMax-M2.7": (200000, 128000, False),
    "MiniMax-M2.7-highspeed": (200000, 128000, False),
}
UNKNOWN_MODEL = (150000, 128000, False)

# (content, content type). A JSON file's content is its document, rendered only when the file is written or
# shown (`gitops.objects.file_text`): held as data, the allow-lists of every agent's openclaw.json are the
# shared lists of its AllowList rather than kilobytes of text per agent, and hashing it is one C-encoded dump.
File = tuple[str | Mapping[str, Any], str]


def agent_files(chart: Chart | Identities, agent: Agent, allow: AllowList, settings: Settings) -> dict[str, File]:
    """Object key -> file, for every file the reconciler writes for this agent."""
    prefix = agent_prefix(agent)
    spec = agent.spec
    runtime = agent_runtime(agent, settings.runtime_or_default)
    files: dict[str, File] = {f"{prefix}/openclaw.json": (openclaw_config(chart, agent, allow, settings), JSON)}
    identity = _text(spec.get("identity"))
    soul = _text(spec.get("soul"))
    if runtime in ("copaw", "hermes") and identity:
        # These runtimes have no IDENTITY.md: upstream prepends the identity to SOUL.md.
        soul = identity + "\n" + soul if soul else identity
    elif identity:
        files[f"{prefix}/IDENTITY.md"] = (identity, MARKDOWN)
    if soul:
        files[f"{prefix}/SOUL.md"] = (soul, MARKDOWN)
    if _text(spec.get("agents")):
        files[f"{prefix}/AGENTS.md"] = (_text(spec.get("agents")), MARKDOWN)
    if spec.get("mcpServers"):
        files[f"{prefix}/mcporter-servers.json"] = (mcporter_config(agent, settings), JSON)
    if spec.get("skills") or spec.get("remoteSkills"):
        skills = {"skills": list(spec.get("skills") or []), "remoteSkills": list(spec.get("remoteSkills") or [])}
        files[f"{prefix}/skills.json"] = (skills, JSON)
    return files


def _text(value: Any) -> str:
    return value.strip() + "\n" if isinstance(value, str) and value.strip() else ""


def openclaw_config(chart: Chart | Identities, agent: Agent, allow: AllowList, settings: Settings) -> dict[str, Any]:
    key = gateway_key(agent)
    model = agent_model(agent)
    context, max_tokens, vision = MODEL_PRESETS.get(model, UNKNOWN_MODEL)
    matrix = {
        "enabled": True,
        "homeserver": (settings.matrix.agents_url if settings.matrix else "") or DEFAULT_HOMESERVER,
        "userId": chart.id(agent),
        "accessToken": matrix_token(agent),
        "encryption": False,
        "dm": {"policy": "allowlist", "allowFrom": allow.dm_list},
        "groupPolicy": "allowlist",
        "groupAllowFrom": allow.group_list,
        "groups": {"*": {"allow": True, "requireMention": True}},
        "streaming": "partial",
        "blockStreaming": True,
        # The homeserver is always on a private network; without this the agent's Matrix client refuses it.
        "network": {"dangerouslyAllowPrivateNetwork": True},
        "autoJoin": "always",
    }
    defaults: dict[str, Any] = {
        "model": {"primary": f"hiclaw-gateway/{model}"},
        "timeoutSeconds": 1800,
        "maxConcurrent": 4,
        "subagents": {"maxConcurrent": 8},
        "workspace": "~",
    }
    heartbeat = agent.spec.get("heartbeat") if agent.role is Role.LEADER else None
    if isinstance(heartbeat, Mapping) and heartbeat.get("enabled"):
        defaults["heartbeat"] = {"enabled": True, **({"every": heartbeat["every"]} if heartbeat.get("every") else {})}
    provider = {
        "baseUrl": settings.gateway_or_default.ai_gateway_url.rstrip("/") + "/v1",
        "apiKey": key,
        "api": "openai-completions",
        "models": [
            {
                "id": model,
                "name": model,
                "contextWindow": context,
                "maxTokens": max_tokens,
                "reasoning": True,
                "input": ["text", "image"] if vision else ["text"],
            }
        ],
    }
    daily = {"mode": "daily", "atHour": 4}
    return {
        "channels": {"matrix": matrix},
        "gateway": {"mode": "local", "port": 18799, "bind": "lan", "auth": {"token": key}, "remote": {"token": key}},
        "models": {"mode": "merge", "providers": {"hiclaw-gateway": provider}},
        "agents": {"defaults": defaults},
        "session": {"resetByType": {"dm": daily, "group": daily}},
        "plugins": {
            "load": {"paths": ["/opt/openclaw/extensions/matrix"]},
            "entries": {"matrix": {"enabled": True}, "memory-core": {"enabled": True}},
        },
    }


def mcporter_config(agent: Agent, settings: Settings) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for server in agent.spec.get("mcpServers") or []:
        url = str(server["url"])
        entry: dict[str, Any] = {"url": url, "transport": server.get("transport") or "http"}
        if gateway_mcp_server(url, settings.gateway_or_default):
            entry["headers"] = {"Authorization": f"Bearer {gateway_key(agent)}"}
        servers[str(server["name"])] = entry
    return {"mcpServers": servers}


@dataclass(frozen=True, slots=True)
class Stored:
    """A file as a storage object spec, hashed once (the hash also feeds the agent's config hash)."""

    spec: Mapping[str, Any]
    hash: str
    plain: bool  # see ManagedObject.plain


def stored(bucket: str, files: Mapping[str, File]) -> dict[str, Stored]:
    out: dict[str, Stored] = {}
    for key, (content, content_type) in files.items():
        spec = {"bucket": bucket, "key": key, "content": content, "content_type": content_type}
        out[key] = Stored(spec, *spec_digest(spec))
    return out


def config_hash(files: Mapping[str, Stored]) -> str:
    return spec_hash({key: f.hash for key, f in files.items()})


_KEEP = ("", EMPTY)


def shared_storage(settings: Settings) -> list[ManagedObject]:
    """The bucket and the org-wide shared prefixes."""
    bucket = settings.bucket
    out = [managed(Provider.STORAGE, "bucket", bucket, {"bucket": bucket}, None)]
    for key, file in stored(bucket, {"shared/knowledge/.keep": _KEEP, "shared/tasks/.keep": _KEEP}).items():
        out.append(
            managed(Provider.STORAGE, "object", key, file.spec, None, [_bucket_key(settings)], file.hash, file.plain)
        )
    return out


def team_keep(team: Team, settings: Settings) -> ManagedObject:
    """The team's shared prefix."""
    key = f"teams/{team.runtime_name}/shared/.keep"
    file = stored(settings.bucket, {key: _KEEP})[key]
    return managed(
        Provider.STORAGE, "object", key, file.spec, team.resource, [_bucket_key(settings)], file.hash, file.plain
    )


def file_objects(agent: Agent, files: Mapping[str, Stored], settings: Settings) -> list[ManagedObject]:
    """The agent's files. They carry its Matrix token (`openclaw.json`), which exists only once its account
    is registered: with Matrix managed here, the files wait for the account."""
    needs = [_bucket_key(settings)]
    if Provider.MATRIX in settings.providers:
        needs.append(make_key(Provider.MATRIX, "user", agent.runtime_name))
    objects = [
        managed(Provider.STORAGE, "object", key, f.spec, agent.owner, needs, f.hash, f.plain)
        for key, f in files.items()
    ]
    return [*objects, area_object(agent, [o.key for o in objects], settings)]


def area_object(agent: Agent, files: Sequence[str], settings: Settings) -> ManagedObject:
    """The agent's whole area `agents/<rt>/` (its files and whatever it wrote itself): deleting it archives it to
    `archive/<timestamp>/agents/<rt>/` — or, with `prune.purge_storage`, removes it. It depends on the files, so
    it is deleted before them and the archive holds them too."""
    prefix = agent_prefix(agent)
    spec = {"bucket": settings.bucket, "prefix": prefix + "/", "purge": settings.prune.purge_storage}
    return managed(Provider.STORAGE, "area", prefix, spec, agent.owner, files)


def _bucket_key(settings: Settings) -> str:
    return make_key(Provider.STORAGE, "bucket", settings.bucket)


def storage_users(settings: Settings) -> bool:
    """Per-agent users and policies need an identity API (AWS IAM or MinIO's admin API); plain S3 has none."""
    return settings.storage is not None and bool(settings.storage.identity_api)


def agent_prefixes(agent: Agent, teams: Mapping[str, str]) -> list[str]:
    """The prefixes an agent may use, each ending with a slash: its own, the shared one, its team's, and the
    Manager's own area."""
    prefixes = [agent_prefix(agent) + "/", "shared/"]
    if agent.team is not None and agent.team in teams:
        prefixes.append(f"teams/{teams[agent.team]}/")
    if agent.role is Role.MANAGER:
        prefixes.append("manager/")
    return prefixes


def policy_statements(bucket: str, prefixes: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": [p for prefix in prefixes for p in (prefix, f"{prefix}*")]}},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*" for prefix in prefixes],
        },
    ]


def storage_access_key(agent: Agent) -> str:
    """The agent's access key id: its runtime name with each `-` as `X`. IAM stores take alphanumeric ids only;
    names are lowercase letters, digits and `-`, so the mapping never makes two agents one key."""
    return agent.runtime_name.replace("-", "X")


def storage_user_key(agent: Agent) -> str:
    return make_key(Provider.STORAGE, "user", agent.runtime_name)


def storage_identity(agent: Agent, bucket: str, teams: Mapping[str, str]) -> list[ManagedObject]:
    rt = agent.runtime_name
    policy = f"worker-{rt}"
    statements = policy_statements(bucket, agent_prefixes(agent, teams))
    user = {
        "access_key": storage_access_key(agent),
        "secret_key": storage_secret(agent),
        "policy": policy,
        "statements": statements,
    }
    return [managed(Provider.STORAGE, "user", rt, user, agent.owner)]
