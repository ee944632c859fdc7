"""Storage (SPEC §3.4): the bucket, each agent's files, shared prefixes, users and least-privilege policies."""

from __future__ import annotations

import json
from dataclasses import replace

from gitops.settings.model import GatewaySettings, MatrixSettings, StorageSettings

from .orgs import ADMIN_API, ALL, PLAIN_S3, compiled, file, keys, manager, member, openclaw, spec, team, uid, worker

BUCKET = "arn:aws:s3:::hiclaw-storage"


def test_bucket_and_shared_prefixes() -> None:
    state = compiled(team("web", teamName="web-rt"))
    assert spec(state, "storage/bucket/hiclaw-storage") == {"bucket": "hiclaw-storage"}
    assert {"shared/knowledge/.keep", "shared/tasks/.keep", "teams/web-rt/shared/.keep"} <= keys(
        state, "storage/object/"
    )
    assert file(state, "teams/web-rt/shared/.keep") == ""
    assert state.objects["storage/object/shared/tasks/.keep"].owner == "org"
    assert state.objects["storage/object/teams/web-rt/shared/.keep"].owner == "Team/web"


def test_every_object_depends_on_the_bucket_and_agent_files_on_the_account() -> None:
    state = compiled(worker("alice", soul="x"))
    for key in keys(state, "storage/object/"):
        expected = {"storage/bucket/hiclaw-storage"}
        if key.startswith("agents/"):  # openclaw.json carries the Matrix token the account's registration yields
            expected.add("matrix/user/alice")
        assert set(state.objects[f"storage/object/{key}"].depends_on) == expected


def test_agent_files_follow_the_spec() -> None:
    state = compiled(
        worker("alice", workerName="al", soul="Kind.", agents="# Rules", identity="- Name: Al", skills=["git"]),
        worker("bob"),
    )
    assert keys(state, "storage/object/agents/al/") == {
        "openclaw.json",
        "SOUL.md",
        "AGENTS.md",
        "IDENTITY.md",
        "skills.json",
    }
    assert keys(state, "storage/object/agents/bob/") == {"openclaw.json"}
    assert file(state, "agents/al/SOUL.md") == "Kind.\n"
    assert file(state, "agents/al/IDENTITY.md") == "- Name: Al\n"
    assert json.loads(file(state, "agents/al/skills.json")) == {"skills": ["git"], "remoteSkills": []}
    assert spec(state, "storage/object/agents/al/SOUL.md")["content_type"] == "text/markdown"


def test_copaw_and_hermes_prepend_identity_to_soul() -> None:
    for runtime in ("copaw", "hermes"):
        state = compiled(worker("alice", runtime=runtime, soul="Kind.", identity="- Name: Al"))
        assert "agents/alice/IDENTITY.md" not in keys(state, "storage/object/")
        assert file(state, "agents/alice/SOUL.md") == "- Name: Al\n\nKind.\n"


def test_openclaw_json_channels_gateway_and_model() -> None:
    settings = replace(
        ALL,
        matrix=MatrixSettings(url="http://synapse:8008", actor_user="hiclaw-bot"),
        gateway=GatewaySettings(ai_gateway_url="http://gw:8080"),
    )
    config = openclaw(compiled(worker("alice", model="hiclaw-gateway/glm-5"), settings=settings), "alice")
    matrix = config["channels"]["matrix"]
    assert matrix["homeserver"] == "http://synapse:8008"
    assert matrix["userId"] == uid("alice")
    assert matrix["accessToken"] == "secret://matrix/alice/token"
    assert (matrix["dm"]["policy"], matrix["groupPolicy"], matrix["autoJoin"]) == ("allowlist", "allowlist", "always")
    assert matrix["groups"] == {"*": {"allow": True, "requireMention": True}}
    key = "secret://gateway/worker-alice/key"
    assert config["gateway"] == {
        "mode": "local",
        "port": 18799,
        "bind": "lan",
        "auth": {"token": key},
        "remote": {"token": key},
    }
    provider = config["models"]["providers"]["hiclaw-gateway"]
    assert (provider["baseUrl"], provider["apiKey"], provider["api"]) == (
        "http://gw:8080/v1",
        key,
        "openai-completions",
    )
    defaults = config["agents"]["defaults"]
    assert defaults["model"] == {"primary": "hiclaw-gateway/glm-5"}
    assert (defaults["timeoutSeconds"], defaults["maxConcurrent"], defaults["subagents"]) == (
        1800,
        4,
        {"maxConcurrent": 8},
    )
    assert "heartbeat" not in defaults


def test_openclaw_json_defaults_without_settings() -> None:
    config = openclaw(compiled(worker("alice")), "alice")
    assert config["channels"]["matrix"]["homeserver"] == "http://matrix-local.hiclaw.io:8080"
    assert config["models"]["providers"]["hiclaw-gateway"]["baseUrl"] == "http://aigw-local.hiclaw.io:8080/v1"


def test_openclaw_json_is_sorted_and_indented() -> None:
    text = file(compiled(worker("alice")), "agents/alice/openclaw.json")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_leader_heartbeat() -> None:
    state = compiled(team("web", leader=member("lead", heartbeat={"enabled": True, "every": "10m"})))
    assert openclaw(state, "lead")["agents"]["defaults"]["heartbeat"] == {"enabled": True, "every": "10m"}
    off = compiled(team("web", leader=member("lead", heartbeat={"enabled": False, "every": "10m"})))
    assert "heartbeat" not in openclaw(off, "lead")["agents"]["defaults"]


def test_team_member_without_model_gets_the_default_model() -> None:
    state = compiled(team("web", leader="lead", workers=("dev",)))
    assert openclaw(state, "dev")["agents"]["defaults"]["model"]["primary"] == "hiclaw-gateway/qwen3.6-plus"


def test_mcporter_config_carries_the_consumer_key_for_gateway_urls_only() -> None:
    servers = [
        {"name": "github", "url": "http://aigw-local.hiclaw.io:8080/mcp-servers/github/mcp"},
        {"name": "desk", "url": "https://mcp.example.com/desk/mcp", "transport": "sse"},
    ]
    state = compiled(worker("alice", mcpServers=servers))
    assert json.loads(file(state, "agents/alice/mcporter-servers.json")) == {
        "mcpServers": {
            "github": {
                "url": "http://aigw-local.hiclaw.io:8080/mcp-servers/github/mcp",
                "transport": "http",
                "headers": {"Authorization": "Bearer secret://gateway/worker-alice/key"},
            },
            "desk": {"url": "https://mcp.example.com/desk/mcp", "transport": "sse"},
        }
    }


def test_storage_users_only_with_the_admin_api() -> None:
    assert not keys(compiled(worker("alice"), settings=PLAIN_S3), "storage/user/")
    assert not keys(compiled(worker("alice"), settings=PLAIN_S3), "storage/policy/")
    state = compiled(worker("alice"), settings=ADMIN_API)
    user = spec(state, "storage/user/alice")
    assert {k: v for k, v in user.items() if k != "statements"} == {
        "access_key": "alice",
        "secret_key": "secret://storage/alice/secret-key",
        "policy": "worker-alice",
    }
    assert state.objects["storage/user/alice"].depends_on == ()
    # Either identity API turns them on.
    for kind in ("aws-iam", "minio-admin"):
        assert keys(compiled(worker("alice"), settings=replace(ALL, storage=StorageSettings(identity=kind))),
                    "storage/user/")


def test_standalone_worker_policy_is_least_privilege() -> None:
    statements = spec(compiled(worker("alice"), settings=ADMIN_API), "storage/user/alice")["statements"]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [BUCKET],
            "Condition": {"StringLike": {"s3:prefix": ["agents/alice/", "agents/alice/*", "shared/", "shared/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"{BUCKET}/agents/alice/*", f"{BUCKET}/shared/*"],
        },
    ]


def test_team_members_also_get_their_team_prefix() -> None:
    state = compiled(team("web", teamName="web-rt"), settings=ADMIN_API)
    for rt in ("lead", "dev"):
        listing, objects = spec(state, f"storage/user/{rt}")["statements"]
        assert listing["Condition"]["StringLike"]["s3:prefix"][-2:] == ["teams/web-rt/", "teams/web-rt/*"]
        assert objects["Resource"][-1] == f"{BUCKET}/teams/web-rt/*"


def test_manager_also_gets_the_manager_prefix() -> None:
    state = compiled(manager(), settings=ADMIN_API)
    listing, objects = spec(state, "storage/user/manager")["statements"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [
        "agents/manager/",
        "agents/manager/*",
        "shared/",
        "shared/*",
        "manager/",
        "manager/*",
    ]
    assert objects["Resource"] == [f"{BUCKET}/agents/manager/*", f"{BUCKET}/shared/*", f"{BUCKET}/manager/*"]


def test_a_team_member_policy_never_reaches_another_team() -> None:
    state = compiled(team("web"), team("data", leader="dlead", workers=("etl",)), settings=ADMIN_API)
    text = json.dumps(spec(state, "storage/user/etl")["statements"])
    assert "teams/web" not in text and "agents/dev" not in text


def test_no_listing_prefix_lacks_its_slash() -> None:
    """`agents/fe` as a list prefix would let agent fe list the key names of `agents/fe-dev/…`."""
    state = compiled(worker("fe"), worker("fe-dev"), settings=ADMIN_API)
    for rt in ("fe", "fe-dev"):
        listing, objects = spec(state, f"storage/user/{rt}")["statements"]
        assert all(p.endswith(("/", "/*")) for p in listing["Condition"]["StringLike"]["s3:prefix"])
        assert all(r.endswith("/*") for r in objects["Resource"])


def test_agents_get_the_agent_facing_endpoints_not_the_reconcilers() -> None:
    """The reconciler often reaches the homeserver and S3 on loopback; agents in containers cannot."""
    settings = replace(
        ALL,
        matrix=MatrixSettings(url="http://127.0.0.1:8008", agent_url="http://synapse.internal:8008"),
        storage=StorageSettings(endpoint="127.0.0.1:9000", agent_endpoint="seaweed.internal:9000"),
    )
    state = compiled(worker("alice"), settings=settings)
    assert openclaw(state, "alice")["channels"]["matrix"]["homeserver"] == "http://synapse.internal:8008"
    env = spec(state, "runtime/container/hiclaw-worker-alice")["env"]
    assert (env["HICLAW_MATRIX_URL"], env["HICLAW_FS_ENDPOINT"]) == (
        "http://synapse.internal:8008",
        "seaweed.internal:9000",
    )
    assert env["HICLAW_STORAGE_PREFIX"] == "hiclaw/hiclaw-storage"
    custom = replace(settings, storage=StorageSettings(agent_prefix="store/agents-bucket"))
    assert spec(compiled(worker("alice"), settings=custom),
                "runtime/container/hiclaw-worker-alice")["env"]["HICLAW_STORAGE_PREFIX"] == "store/agents-bucket"
    everything = json.dumps([spec(state, key) for key in state.objects])
    assert "127.0.0.1" not in everything
    # Without the agent-facing setting, agents get the reconciler's own URL.
    plain = compiled(worker("alice"), settings=replace(ALL, matrix=MatrixSettings(url="http://synapse:8008")))
    assert openclaw(plain, "alice")["channels"]["matrix"]["homeserver"] == "http://synapse:8008"
