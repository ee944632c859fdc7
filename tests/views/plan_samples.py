"""Sample plans for the view tests, built with the real planner from hand-written managed objects.

They are synthetic on purpose: the golden files must change only when a view changes, not whenever the
compiler learns something new. `tests/views/test_plan_schema.py` also checks real plans of example-org.
"""

from __future__ import annotations

from typing import Any

from gitops.compile.access import AccessReport, diff
from gitops.objects import ManagedObject, Provider
from gitops.plan.model import Plan, make_plan

D = "hiclaw.test"
ALL = (Provider.RUNTIME, Provider.MATRIX, Provider.STORAGE, Provider.GATEWAY)


# What a runtime backend declares forces a replace of a container (its traits; the planner asks, never assumes).
CONTAINER_REPLACE_ON = frozenset({"image", "env", "runtime", "ports", "labels"})


def uid(name: str) -> str:
    return f"@{name}:{D}"


def room(name: str) -> str:
    return f"#{name}:{D}"


def obj(
    provider: Provider, type_: str, name: str, spec: dict[str, Any], owner: str, prune: bool = True
) -> ManagedObject:
    return ManagedObject(provider, type_, name, spec, owner, (), prune)


def table(*objects: ManagedObject) -> dict[str, ManagedObject]:
    return {o.key: o for o in objects}


def container(name: str, owner: str, runtime: str, image: str, config_hash: str) -> ManagedObject:
    return obj(Provider.RUNTIME, "container", f"hiclaw-worker-{name}", {
        "image": image,
        "runtime": runtime,
        "env": {"HICLAW_WORKER_NAME": name, "HICLAW_MATRIX_DOMAIN": D,
                "HICLAW_WORKER_GATEWAY_KEY": f"secret://gateway/worker-{name}/key"},
        "labels": {"hiclaw.io/name": name, "hiclaw.io/runtime": runtime},
        "config_hash": config_hash,
        "state": "Running",
    }, owner)


def soul(agent: str, text: str, owner: str) -> ManagedObject:
    return obj(Provider.STORAGE, "object", f"agents/{agent}/SOUL.md",
               {"bucket": "hiclaw-storage", "key": f"agents/{agent}/SOUL.md", "content": text,
                "content_type": "text/markdown"}, owner)


def team_room(members: list[str], name: str) -> ManagedObject:
    return obj(Provider.MATRIX, "room", "hiclaw-team-frontend-team", {
        "alias": room("hiclaw-team-frontend-team"), "name": name, "preset": "private_chat",
        "members": sorted(members), "power": {uid("priya"): 100, uid("frontend-lead"): 100},
    }, "Team/frontend-team")


def user(name: str, owner: str, kind: str = "agent") -> ManagedObject:
    return obj(Provider.MATRIX, "user", name, {"user_id": uid(name), "displayname": name, "kind": kind,
                                               "password": f"secret://matrix/{name}/password"}, owner)


SOUL_BEFORE = "# fe-dev\nPragmatic; small pull requests with tests.\nPrefers simple solutions.\n"
SOUL_AFTER = "# fe-dev\nPragmatic; small, reviewed pull requests with tests.\nPrefers simple solutions.\n"
TEAM_BEFORE = {"peerMentions": True, "leader": {"name": "frontend-lead"},
               "workers": [{"name": "fe-dev", "soul": SOUL_BEFORE}, {"name": "lena-bot"}]}
TEAM_AFTER = {"peerMentions": False, "leader": {"name": "frontend-lead"},
              "workers": [{"name": "fe-dev", "soul": SOUL_AFTER, "runtime": "openclaw"}, {"name": "bob"}]}


# The access report before and after the sample's change: bob joins the team (lena leaves it), alice is new, and
# an outside contractor is added to fe-dev's group allow-list without joining any room.
_TEAM = room("hiclaw-team-frontend-team")
ACCESS_BEFORE = AccessReport.build(
    uid("hiclaw-gitops"),
    {_TEAM: [uid("priya"), uid("frontend-lead"), uid("fe-dev"), uid("lena")],
     room("hiclaw-worker-fe-dev"): [uid("priya"), uid("frontend-lead"), uid("fe-dev")]},
    {uid("fe-dev"): ([uid("priya"), uid("frontend-lead"), uid("lena")], [uid("priya"), uid("lena")]),
     uid("frontend-lead"): ([uid("priya"), uid("fe-dev"), uid("lena")], [uid("priya")])},
    power={_TEAM: [uid("priya"), uid("frontend-lead")]},
    private=[room("hiclaw-worker-fe-dev")], admin=uid("admin"), domain=D,
)
ACCESS_AFTER = AccessReport.build(
    uid("hiclaw-gitops"),
    {_TEAM: [uid("priya"), uid("frontend-lead"), uid("fe-dev"), uid("bob")],
     room("hiclaw-worker-fe-dev"): [uid("priya"), uid("frontend-lead"), uid("fe-dev")],
     room("hiclaw-worker-alice"): [uid("admin"), uid("alice")]},
    {uid("fe-dev"): ([uid("priya"), uid("frontend-lead"), uid("bob"), "@contractor:evil.example.com"], [uid("priya")]),
     uid("frontend-lead"): ([uid("priya"), uid("fe-dev"), uid("bob")], [uid("priya")]),
     uid("alice"): ([uid("admin")], [uid("admin")])},
    power={_TEAM: [uid("priya"), uid("frontend-lead")], room("hiclaw-worker-alice"): [uid("admin")]},
    private=[room("hiclaw-worker-fe-dev")], admin=uid("admin"), domain=D,
)


def sample() -> Plan:
    """Every action: create, update, replace, delete, a no-op, and an object kept because prune is disabled."""
    current = table(
        container("fe-dev", "Team/frontend-team", "copaw", "hiclaw/copaw-worker:latest", "e41ff6e3"),
        soul("fe-dev", SOUL_BEFORE, "Team/frontend-team"),
        team_room([uid("priya"), uid("frontend-lead"), uid("fe-dev"), uid("lena")], "Team: frontend-team"),
        user("fe-dev", "Team/frontend-team"),
        user("lena", "Human/lena", "human"),
        obj(Provider.GATEWAY, "ai-route", "default-ai-route", {"allowed_consumers": ["worker-fe-dev"]}, "org"),
        obj(Provider.GATEWAY, "consumer", "worker-old", {"name": "worker-old", "credential": {"type": "key-auth"}},
            "Worker/old"),
        obj(Provider.STORAGE, "object", "shared/knowledge/README.md",
            {"content": "kept\n", "key": "shared/knowledge/README.md"}, "org", prune=False),
    )
    desired = table(
        container("fe-dev", "Team/frontend-team", "openclaw", "hiclaw/worker-agent:latest", "27c0aba5"),
        container("alice", "Worker/alice", "openclaw", "hiclaw/worker-agent:latest", "9f00aa11"),
        soul("fe-dev", SOUL_AFTER, "Team/frontend-team"),
        soul("alice", "# Alice\nAnswers support tickets.\nEscalates to the Manager.\n", "Worker/alice"),
        team_room([uid("priya"), uid("frontend-lead"), uid("fe-dev"), uid("bob")], "Team: Frontend"),
        user("fe-dev", "Team/frontend-team"),
        user("alice", "Worker/alice"),
        obj(Provider.GATEWAY, "ai-route", "default-ai-route",
            {"allowed_consumers": ["worker-alice", "worker-fe-dev"]}, "org"),
    )
    return make_plan(
        replace_on=lambda o: CONTAINER_REPLACE_ON if o.type == "container" else frozenset(),
        desired=desired,
        current=current,
        head="4f5e6d7c8b9a",
        base="1a2b3c4d5e6f",
        compared_against="commit",
        providers=ALL,
        disabled_notes={},
        old_org={"Team/frontend-team": TEAM_BEFORE, "Human/lena": {"permissionLevel": 2},
                 "Worker/old": {"model": "qwen3.6-plus"}, "Worker/support-bot": {"model": "qwen3.6-plus"}},
        new_org={"Team/frontend-team": TEAM_AFTER, "Worker/alice": {"model": "claude-sonnet-4-6"},
                 "Worker/support-bot": {"model": "qwen3.6-plus"}},
        access=diff(ACCESS_BEFORE, ACCESS_AFTER),

        guard={"tripped": False, "reasons": [], "deleted_agents": ["old"]},
    )


def no_changes() -> Plan:
    """A live plan where everything is as declared; only the runtime is configured."""
    objects = table(container("alice", "Worker/alice", "openclaw", "hiclaw/worker-agent:latest", "9f00aa11"),
                    container("bob", "Worker/bob", "copaw", "hiclaw/copaw-worker:latest", "1234abcd"))
    org = {"Worker/alice": {"model": "m"}, "Worker/bob": {"model": "m"}}
    return make_plan(desired=objects, current=objects, head="4f5e6d7c8b9a", base="live observation",
                     compared_against="live", providers=(Provider.RUNTIME,),
                     disabled_notes={p.value: "no settings section" for p in ALL}, old_org=org, new_org=org)


def huge(agents: int = 3000) -> Plan:
    """A first apply of a very large org: thousands of creates with file contents, a long access report."""
    desired: dict[str, ManagedObject] = {}
    new_org: dict[str, dict[str, Any]] = {}
    for i in range(agents):
        name = f"worker-{i:05d}"
        body = "".join(f"line {n} of the soul of {name}\n" for n in range(30))
        for o in (soul(name, body, f"Worker/{name}"), user(name, f"Worker/{name}")):
            desired[o.key] = o
        new_org[f"Worker/{name}"] = {"model": "qwen3.6-plus", "soul": body}
    rooms = {room(f"hiclaw-worker-worker-{i:05d}"): [uid("admin"), uid(f"worker-{i:05d}")] for i in range(agents)}
    lists = {uid(f"worker-{i:05d}"): ([uid("admin")], [uid("admin")]) for i in range(agents)}
    access = diff(None, AccessReport.build(uid("hiclaw-gitops"), rooms, lists, admin=uid("admin"), domain=D))
    return make_plan(desired=desired, current={}, head="dir:0123456789abcdef", base="nothing applied yet",
                     compared_against="empty", providers=ALL, disabled_notes={}, old_org={}, new_org=new_org,
                     access=access, warnings=[f"warning {i}: something to know" for i in range(300)],
                     guard={"tripped": True, "reasons": ["the desired state is huge"], "deleted_agents": []})
