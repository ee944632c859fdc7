"""Containers (SPEC §3.6): names, images, environment, labels and desired state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gitops.org import Resource
from gitops.settings.model import RuntimeSettings, Settings

from .orgs import ADMIN_API, ALL, PLAIN_S3, compiled, keys, manager, member, spec, team, worker


def container(*resources: Resource, name: str, settings: Settings = ALL) -> Any:
    return spec(compiled(*resources, settings=settings), f"runtime/container/{name}")


def test_containers_are_named_by_resource_or_member_name() -> None:
    state = compiled(manager(), worker("alice", workerName="al"), team("web", leader=member("lead", workerName="boss")))
    assert keys(state, "runtime/container/") == {
        "hiclaw-manager",
        "hiclaw-worker-alice",
        "hiclaw-worker-lead",
        "hiclaw-worker-dev",
    }
    assert keys(compiled(manager("ops")), "runtime/container/") == {"hiclaw-manager-ops"}


def test_image_from_spec_else_runtime_image() -> None:
    assert container(worker("alice", image="acme/agent:1"), name="hiclaw-worker-alice")["image"] == "acme/agent:1"
    assert (
        container(worker("alice", runtime="hermes"), name="hiclaw-worker-alice")["image"]
        == "hiclaw/hermes-worker:latest"
    )
    assert container(worker("alice"), name="hiclaw-worker-alice")["image"] == "hiclaw/worker-agent:latest"


def test_leaders_run_the_leader_runtime() -> None:
    lead = container(team("web"), name="hiclaw-worker-lead")
    assert (lead["runtime"], lead["image"], lead["role"]) == ("copaw", "hiclaw/copaw-worker:latest", "team_leader")
    settings = replace(ALL, runtime=RuntimeSettings(leader_runtime="hermes"))
    assert container(team("web"), name="hiclaw-worker-lead", settings=settings)["runtime"] == "hermes"


def test_manager_image_setting_wins_over_runtime_image() -> None:
    settings = replace(ALL, runtime=RuntimeSettings(manager_image="acme/manager:2"))
    assert container(manager(), name="hiclaw-manager", settings=settings)["image"] == "acme/manager:2"
    assert container(manager(image="acme/mine:3"), name="hiclaw-manager", settings=settings)["image"] == "acme/mine:3"


def test_worker_environment_as_upstream_with_secret_references() -> None:
    env = container(worker("alice", workerName="al"), name="hiclaw-worker-alice", settings=ADMIN_API)["env"]
    assert env == {
        "HICLAW_WORKER_NAME": "al",
        "HICLAW_WORKER_CR_NAME": "alice",
        "HICLAW_WORKER_GATEWAY_KEY": "secret://gateway/worker-al/key",
        "HICLAW_WORKER_MATRIX_TOKEN": "secret://matrix/al/token",
        "HICLAW_FS_ACCESS_KEY": "al",
        "HICLAW_FS_SECRET_KEY": "secret://storage/al/secret-key",
        "HICLAW_FS_BUCKET": "hiclaw-storage",
        "HICLAW_STORAGE_PREFIX": "hiclaw/hiclaw-storage",
        "HICLAW_MATRIX_DOMAIN": "matrix-local.hiclaw.io:8080",
        "HICLAW_AI_GATEWAY_URL": "http://aigw-local.hiclaw.io:8080",
        "OPENCLAW_DISABLE_BONJOUR": "1",
        "OPENCLAW_MDNS_HOSTNAME": "hiclaw-w-al",
        "HICLAW_CONSOLE_PORT": "8088",
        "HOME": "/root/hiclaw-fs/agents/al",
    }


def test_manager_environment() -> None:
    env = container(manager(config={"heartbeatInterval": "15m"}), name="hiclaw-manager", settings=ADMIN_API)["env"]
    assert env["HICLAW_MANAGER_NAME"] == "default"
    assert env["HICLAW_MANAGER_GATEWAY_KEY"] == "secret://gateway/manager/key"
    assert env["HICLAW_MANAGER_PASSWORD"] == "secret://matrix/manager/password"
    assert env["HICLAW_MANAGER_HEARTBEAT_INTERVAL"] == "15m"
    assert env["HICLAW_DEFAULT_MODEL"] == "claude-sonnet-4-6"
    assert env["HOME"] == "/root/manager-workspace"


def test_credentials_only_for_managed_accounts() -> None:
    env = container(worker("alice"), name="hiclaw-worker-alice", settings=replace(PLAIN_S3, matrix=None, gateway=None))[
        "env"
    ]
    assert not any(v.startswith("secret://") for v in env.values())


def test_spec_env_and_labels_merge_under_system_values() -> None:
    alice = worker(
        "alice", env={"LOG_LEVEL": "info", "HOME": "/tmp"}, labels={"tier": "gold", "hiclaw.io/role": "boss"}
    )
    spec_ = container(alice, name="hiclaw-worker-alice")
    assert spec_["env"]["LOG_LEVEL"] == "info"
    assert spec_["env"]["HOME"] == "/root/hiclaw-fs/agents/alice"
    assert spec_["labels"]["tier"] == "gold"
    assert spec_["labels"]["hiclaw.io/role"] == "standalone"


def test_labels_mark_ownership_and_identity() -> None:
    labels = container(team("web", workers=(member("dev", runtime="hermes"),)), name="hiclaw-worker-dev")["labels"]
    assert labels == {
        "hiclaw.io/managed-by": "hiclaw-gitops",
        "hiclaw.io/kind": "Team",
        "hiclaw.io/name": "dev",
        "hiclaw.io/team": "web",
        "hiclaw.io/role": "worker",
        "hiclaw.io/runtime": "hermes",
    }


@pytest.mark.parametrize("state", ["Running", "Sleeping", "Stopped"])
def test_state_is_passed_through(state: str) -> None:
    assert container(worker("alice", state=state), name="hiclaw-worker-alice")["state"] == state


def test_state_defaults_to_running_and_is_enforced_only_when_annotated() -> None:
    plain = container(worker("alice"), name="hiclaw-worker-alice")
    assert (plain["state"], plain["enforce_state"]) == ("Running", False)
    enforced = container(worker("alice", {"enforce-state": "true"}, state="Sleeping"), name="hiclaw-worker-alice")
    assert (enforced["state"], enforced["enforce_state"]) == ("Sleeping", True)


def test_container_managed_false_means_no_container() -> None:
    state = compiled(
        worker("alice", containerManaged=False), team("web", workers=(member("dev", containerManaged=False),))
    )
    assert keys(state, "runtime/container/") == {"hiclaw-worker-lead"}
    assert "matrix/user/alice" in state.objects


def test_container_depends_on_account_files_storage_user_consumer_and_route_grant() -> None:
    state = compiled(worker("alice", soul="x"), settings=ADMIN_API)
    assert state.objects["runtime/container/hiclaw-worker-alice"].depends_on == (
        "gateway/ai-route-grant/default-ai-route:worker-alice",
        "gateway/consumer/worker-alice",
        "matrix/user/alice",
        "storage/object/agents/alice/SOUL.md",
        "storage/object/agents/alice/openclaw.json",
        "storage/user/alice",
    )


def test_config_change_changes_only_the_config_hash() -> None:
    before = container(worker("alice", soul="Kind."), name="hiclaw-worker-alice")
    after = container(worker("alice", soul="Terse."), name="hiclaw-worker-alice")
    assert before["config_hash"] != after["config_hash"]
    assert {k for k in before if before[k] != after[k]} == {"config_hash"}  # an update (restart), not a re-creation


def test_docker_only_settings_stay_out_of_the_runtime_spec() -> None:
    """Network and restart policy are the Docker backend's settings, not part of what any runtime is told to run
    (a Kubernetes Deployment has neither): changing them changes no compiled spec."""
    settings = replace(ALL, runtime=RuntimeSettings(network="acme-net", restart_policy="always"))
    spec_ = container(worker("alice"), name="hiclaw-worker-alice", settings=settings)
    assert "network" not in spec_ and "restart_policy" not in spec_
    assert spec_ == container(worker("alice"), name="hiclaw-worker-alice", settings=ALL)
