"""Containers (SPEC §3.6): one per agent — image, environment, labels, ports and desired state.

| Field   | Value                                                                                     |
|---------|-------------------------------------------------------------------------------------------|
| name    | `hiclaw-worker-<name>`; Manager `hiclaw-manager` (`default`) or `hiclaw-manager-<name>`   |
| image   | `spec.image`, else the image of its runtime (leaders: the leader runtime; Manager: `manager_image` first) |
| env     | upstream `HICLAW_*` names (reference §2.5), credentials as secret references; `spec.env` under them |
| labels  | managed-by, kind, name, team, role, runtime; `spec.labels` under them                     |
| state   | `spec.state` (Running / Sleeping / Stopped), enforced only with `enforce-state: "true"`   |

Credentials are passed only for accounts this reconciler manages: a disabled provider (or storage without
its admin API) has no account to hand over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gitops.compile.gateway import consumer_key, route_grant_keys
from gitops.compile.identities import (
    Chart,
    Identities,
    agent_model,
    agent_runtime,
    container_name,
    gateway_key,
    managed,
    matrix_password,
    matrix_token,
    storage_secret,
)
from gitops.compile.storage import Stored, config_hash, storage_access_key, storage_user_key, storage_users
from gitops.objects import ManagedObject, Provider, make_key
from gitops.org import Agent, Role
from gitops.settings.model import Settings

CONSOLE_PORT = 8088
MANAGER_CONSOLE = {"container": 18799, "host": 18888, "host_ip": "127.0.0.1"}
MANAGER_CONFIG_ENV = {
    "heartbeatInterval": "HICLAW_MANAGER_HEARTBEAT_INTERVAL",
    "workerIdleTimeout": "HICLAW_MANAGER_WORKER_IDLE_TIMEOUT",
    "notifyChannel": "HICLAW_MANAGER_NOTIFY_CHANNEL",
}


def agent_container(
    chart: Chart | Identities, agent: Agent, files: Mapping[str, Stored], settings: Settings
) -> ManagedObject | None:
    """The agent's container (see `container_object`), depending on the objects of the enabled providers."""
    enabled = settings.providers
    needs = []
    if Provider.MATRIX in enabled:
        needs.append(make_key(Provider.MATRIX, "user", agent.runtime_name))
    if Provider.STORAGE in enabled:
        needs += [make_key(Provider.STORAGE, "object", key) for key in files]
    if storage_users(settings):
        needs.append(storage_user_key(agent))
    if Provider.GATEWAY in enabled:  # never started before its route grant exists (upstream #444)
        needs += [consumer_key(agent), *route_grant_keys(agent, settings.gateway_or_default)]
    return container_object(chart, agent, config_hash(files), settings, needs)


def container_object(
    chart: Chart | Identities, agent: Agent, config_hash: str, settings: Settings, depends_on: Sequence[str]
) -> ManagedObject | None:
    """The agent's container; None when `containerManaged: false` leaves it to someone else.

    `config_hash` covers the agent's files: a change of it alone is an update (the agent restarts), not a
    re-creation by the plan's rules (labels, image, env... changing is).
    """
    if agent.spec.get("containerManaged") is False:
        return None
    runtime_settings = settings.runtime_or_default
    runtime = agent_runtime(agent, runtime_settings)
    if agent.role is Role.MANAGER:
        image = agent.spec.get("image") or runtime_settings.manager_image or runtime_settings.images.get(runtime, "")
        ports = [dict(MANAGER_CONSOLE)]
    else:
        image = agent.spec.get("image") or runtime_settings.images.get(runtime, "")
        ports = [{"container": CONSOLE_PORT}]
    labels = {
        "hiclaw.io/managed-by": runtime_settings.instance,
        "hiclaw.io/kind": agent.owner.kind,
        "hiclaw.io/name": agent.name,
        "hiclaw.io/role": agent.role.value,
        "hiclaw.io/runtime": runtime,
    }
    if agent.team is not None:
        labels["hiclaw.io/team"] = agent.team
    spec = {
        "image": str(image),
        "runtime": runtime,
        "role": agent.role.value,
        "env": _merged(agent.spec.get("env"), environment(chart, agent, settings)),
        "labels": _merged(agent.spec.get("labels"), labels),
        "ports": ports,
        "state": str(agent.spec.get("state") or "Running"),
        "enforce_state": agent.owner.annotation("enforce-state") == "true",
        "config_hash": config_hash,
    }
    return managed(Provider.RUNTIME, "container", container_name(agent), spec, agent.owner, depends_on)


def _merged(user: Any, system: Mapping[str, str]) -> dict[str, str]:
    """User values under system ones: a key the system sets keeps the system value."""
    values = {str(k): str(v) for k, v in (user or {}).items()}
    values.update(system)
    return dict(sorted(values.items()))


def environment(chart: Chart | Identities, agent: Agent, settings: Settings) -> dict[str, str]:
    """Upstream's environment (reference §2.5), credentials as secret references."""
    rt = agent.runtime_name
    env = {"HICLAW_MATRIX_DOMAIN": chart.domain, "HICLAW_FS_BUCKET": settings.bucket}
    if settings.matrix and settings.matrix.agents_url:
        env["HICLAW_MATRIX_URL"] = settings.matrix.agents_url
    if settings.storage and settings.storage.agents_endpoint:
        env["HICLAW_FS_ENDPOINT"] = settings.storage.agents_endpoint
    if settings.storage:
        env["HICLAW_STORAGE_PREFIX"] = settings.storage.agents_prefix
    if settings.gateway:
        env["HICLAW_AI_GATEWAY_URL"] = settings.gateway.ai_gateway_url
    if storage_users(settings):
        env["HICLAW_FS_ACCESS_KEY"] = storage_access_key(agent)
        env["HICLAW_FS_SECRET_KEY"] = storage_secret(agent)
    if agent.role is Role.MANAGER:
        env.update(
            HICLAW_MANAGER_NAME=agent.name,
            HOME="/root/manager-workspace",
            HICLAW_DEFAULT_MODEL=agent_model(agent),
            HICLAW_MANAGER_RUNTIME=agent_runtime(agent, settings.runtime_or_default),
            HICLAW_ADMIN_USER=settings.admin_user,
        )
        if settings.gateway:
            env["HICLAW_MANAGER_GATEWAY_KEY"] = gateway_key(agent)
        if settings.matrix:
            env["HICLAW_MANAGER_PASSWORD"] = matrix_password(rt)
        config = agent.spec.get("config") or {}
        env.update({var: str(config[key]) for key, var in MANAGER_CONFIG_ENV.items() if config.get(key)})
        return env
    env.update(
        HICLAW_WORKER_NAME=rt,
        HICLAW_WORKER_CR_NAME=agent.name,
        OPENCLAW_DISABLE_BONJOUR="1",
        OPENCLAW_MDNS_HOSTNAME=f"hiclaw-w-{rt}",
        HICLAW_CONSOLE_PORT=str(CONSOLE_PORT),
        HOME=f"/root/hiclaw-fs/agents/{rt}",
    )
    if settings.gateway:
        env["HICLAW_WORKER_GATEWAY_KEY"] = gateway_key(agent)
    if settings.matrix:
        env["HICLAW_WORKER_MATRIX_TOKEN"] = matrix_token(agent)
    return env
