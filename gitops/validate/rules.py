"""Org rules: the cross-document checks of SPEC §2, each a function from the org to diagnostics."""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitops import ANNOTATION_PREFIX
from gitops.diagnostics import Diagnostic, diag
from gitops.org import Agent, Org, Resource, Role, human_localpart, team_agents, team_runtime_name
from gitops.settings.model import DEFAULT_SERVER_NAME
from gitops.validate.schema import json_path

MXID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:[0-9]+)?$")
BARE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
POLICY_LISTS = ("groupAllowExtra", "groupDenyExtra", "dmAllowExtra", "dmDenyExtra")
MATRIX_USER_ID = ANNOTATION_PREFIX + "matrix-user-id"
MAX_PORT = 65535

# Shapes of credentials that must not sit in plain `env` values. The value itself is never echoed.
SECRET_SHAPES = [
    re.compile(p)
    for p in (
        r"\bsk-[A-Za-z0-9_\-]{20,}",
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",
        r"\bgithub_pat_[A-Za-z0-9_]{30,}",
        r"\bAKIA[0-9A-Z]{16}\b",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"\bAIza[0-9A-Za-z_\-]{35}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.",
    )
]
SECRET_KEY_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)

Locate = Callable[[Resource, Sequence[str | int], bool], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Context:
    """What every rule may look at: the org, names declared by any document, and how to locate a path."""

    org: Org
    declared: Mapping[str, set[str]]  # kind -> names declared, valid or not (avoids cascading errors)
    locate: Locate
    escapes: Callable[[str], bool]
    unreadable: bool = False  # some file or document could not be read: its resources are unknown, not absent
    server_name: str = DEFAULT_SERVER_NAME  # the Matrix server name (settings `matrix.server_name`)
    storage_identity: str = ""  # the object store's identity API (settings `storage.identity`), "" for none

    def at(self, res: Resource, path: Sequence[str | int], key: bool = False) -> dict[str, Any]:
        line, column = self.locate(res, path, key)
        return {"file": res.file, "line": line, "column": column, "path": json_path(path)}

    def human_id(self, human: Resource) -> str:
        """A Human's Matrix ID (SPEC §3.1): its `matrix-user-id` annotation, else `@<username or name>:<server>`."""
        return human.annotation("matrix-user-id") or f"@{human_localpart(human)}:{self.server_name}"

    def agent_id(self, agent: Agent) -> str:
        return f"@{agent.runtime_name}:{self.server_name}"


Rule = Callable[[Context], Iterable[Diagnostic]]


def runtime_names(ctx: Context) -> Iterable[Diagnostic]:
    seen: dict[str, Agent] = {}
    for agent in ctx.org.agents():
        rt = agent.runtime_name
        first = seen.get(rt)
        if first is not None and _reported_elsewhere(first, agent):
            continue
        if agent.role is not Role.MANAGER and rt == "manager":
            yield diag(
                "R402",
                "runtime name `manager` is reserved for the Manager",
                hint="rename the agent (set `workerName` or change its name)",
                **ctx.at(agent.owner, _name_path(agent)),
            )
        elif first is not None:
            line, _ = ctx.locate(first.owner, _name_path(first), False)
            yield diag(
                "R402",
                f"runtime name `{rt}` is already used by {_describe(first)} ({first.owner.file}:{line})",
                hint="every agent needs its own runtime name: "
                "it becomes its Matrix account, storage prefix and gateway consumer",
                **ctx.at(agent.owner, _name_path(agent)),
            )
        else:
            seen[rt] = agent


def team_members(ctx: Context) -> Iterable[Diagnostic]:
    standalone = ctx.org.workers
    for team in ctx.org.teams.values():
        leader = team.spec.get("leader") or {}
        names: dict[str, int] = {}
        for i, member in enumerate(team.spec.get("workers") or []):
            name = member.get("name")
            path = ("spec", "workers", i, "name")
            if name == leader.get("name"):
                yield diag(
                    "R404",
                    f"`{name}` is the leader of team `{team.name}` and cannot also be one of its workers",
                    hint="remove it from `workers`, or choose another leader",
                    **ctx.at(team, path),
                )
            elif name in names:
                yield diag(
                    "R402",
                    f"team `{team.name}` lists worker `{name}` twice (first at workers[{names[name]}])",
                    hint="worker names must be unique within a team",
                    **ctx.at(team, path),
                )
            else:
                names[name] = i
        named: list[tuple[Any, tuple[str | int, ...]]] = [(leader.get("name"), ("spec", "leader", "name"))]
        named += [(m.get("name"), ("spec", "workers", i, "name")) for i, m in enumerate(team.spec.get("workers") or [])]
        for agent_name, member_path in named:
            if isinstance(agent_name, str) and agent_name in standalone:
                yield diag(
                    "R403",
                    f"team member `{agent_name}` has the name of the standalone Worker `{agent_name}` "
                    f"({standalone[agent_name].file}:{standalone[agent_name].line})",
                    hint="rename the team member or the Worker: names identify credentials and must not collide",
                    **ctx.at(team, member_path),
                )


def human_access(ctx: Context) -> Iterable[Diagnostic]:
    members = {a.name: a.team for a in ctx.org.agents() if a.role in (Role.LEADER, Role.WORKER)}
    for human in ctx.org.humans.values():
        level = human.spec.get("permissionLevel")
        teams = human.spec.get("accessibleTeams") or []
        workers = human.spec.get("accessibleWorkers") or []
        if level == 3 and teams:
            yield diag(
                "R408",
                f"`{human.name}` has permissionLevel 3 (worker-only) but lists accessibleTeams",
                hint="use permissionLevel 2 for team access, or remove accessibleTeams",
                **ctx.at(human, ("spec", "accessibleTeams"), True),
            )
        if level == 1 and (teams or workers):
            field = "accessibleTeams" if teams else "accessibleWorkers"
            yield diag(
                "R409",
                f"`{human.name}` has permissionLevel 1, which reaches every team and worker; access lists are ignored",
                hint="remove the access lists, or lower the level to 2",
                **ctx.at(human, ("spec", field), True),
            )
        if level == 1:
            continue
        for i, team in enumerate(teams):
            if team not in ctx.declared["Team"]:
                yield diag(
                    "R405",
                    f"accessibleTeams names `{team}`, which is not a Team in this org",
                    hint=_suggest(team, ctx.declared["Team"]) or "declare the Team, or remove the entry",
                    **ctx.at(human, ("spec", "accessibleTeams", i)),
                )
        for i, worker in enumerate(workers):
            if worker in ctx.declared["Worker"]:
                continue
            if worker in members:
                team = members[worker]
                hint = f"`{worker}` is a member of team `{team}`; grant the team instead: accessibleTeams: [{team}]"
                message = f"accessibleWorkers names `{worker}`, a team member, not a standalone Worker"
            else:
                hint = _suggest(worker, ctx.declared["Worker"]) or "declare the Worker, or remove the entry"
                message = f"accessibleWorkers names `{worker}`, which is not a Worker in this org"
            yield diag("R406", message, hint=hint, **ctx.at(human, ("spec", "accessibleWorkers", i)))


def team_humans(ctx: Context) -> Iterable[Diagnostic]:
    humans = ctx.declared["Human"]
    for team in ctx.org.teams.values():
        admin = team.spec.get("admin") or {}
        refs: list[tuple[str, tuple[str | int, ...]]] = []
        if admin.get("name"):
            refs.append((admin["name"], ("spec", "admin", "name")))
        members = team.spec.get("humanMembers") or []
        refs += [(m["name"], ("spec", "humanMembers", i, "name")) for i, m in enumerate(members)]
        for name, path in refs:
            if name not in humans:
                yield diag(
                    "R407",
                    f"team `{team.name}` names the Human `{name}`, which is not declared",
                    hint=_suggest(name, humans) or f"declare a Human named `{name}`",
                    **ctx.at(team, path),
                )
        yield from _declared_ids(ctx, team)


def _declared_ids(ctx: Context, team: Resource) -> Iterable[Diagnostic]:
    """`matrixUserId` of the Team Admin (R415) and of each human member (R421): a Matrix user ID and, when the
    entry names a Human, exactly that Human's Matrix ID — rooms and allow-lists use the Human's."""
    admin = team.spec.get("admin") or {}
    entries: list[tuple[str, str, Mapping[str, Any], tuple[str | int, ...]]] = []
    if admin:
        entries.append(("R415", "admin.matrixUserId", admin, ("spec", "admin")))
    for i, member in enumerate(team.spec.get("humanMembers") or []):
        entries.append(("R421", f"humanMembers[{i}].matrixUserId", member, ("spec", "humanMembers", i)))
    for code, label, entry, path in entries:
        given = entry.get("matrixUserId")
        if not isinstance(given, str) or not given:
            continue
        human = ctx.org.humans.get(entry.get("name") or "")
        if not MXID.match(given):
            derived = f"; it is derived from Human `{human.name}`" if human is not None else ""
            message = f"{label} `{given}` is not a Matrix user ID"
            hint = f"write @localpart:server, or remove matrixUserId{derived}"
        elif human is not None and given != ctx.human_id(human):
            expected = ctx.human_id(human)
            message = f"{label} `{given}` is not the Matrix ID of Human `{human.name}` ({expected})"
            hint = f"remove matrixUserId (it is derived from the Human), or make it {expected}"
        else:
            continue
        yield diag(code, message, hint=hint, **ctx.at(team, (*path, "matrixUserId")))


def single_manager(ctx: Context) -> Iterable[Diagnostic]:
    managers = sorted(ctx.org.managers.values(), key=lambda r: (r.file, r.line))
    for extra in managers[1:]:
        yield diag(
            "R410",
            f"a second Manager `{extra.name}` is declared "
            f"(first: `{managers[0].name}` at {managers[0].file}:{managers[0].line})",
            hint="an org has at most one Manager; remove one",
            **ctx.at(extra, ("metadata", "name")),
        )


def channel_policies(ctx: Context) -> Iterable[Diagnostic]:
    known = {a.runtime_name for a in ctx.org.agents()} | {human_localpart(h) for h in ctx.org.humans.values()}
    known |= {"manager", "admin"}
    for owner, path, policy in _policies(ctx.org):
        for list_name in POLICY_LISTS:
            for i, entry in enumerate(policy.get(list_name) or []):
                where = ctx.at(owner, (*path, list_name, i))
                if entry.startswith("@"):
                    if not MXID.match(entry):
                        yield diag(
                            "R411",
                            f"`{entry}` is not a Matrix user ID",
                            hint="write @localpart:server (e.g. @alice:matrix-local.hiclaw.io:8080) or a bare name",
                            **where,
                        )
                elif not BARE.match(entry):
                    yield diag(
                        "R411",
                        f"`{entry}` is neither a Matrix user ID nor a bare name",
                        hint="write @localpart:server or a bare lowercase name",
                        **where,
                    )
                elif entry not in known:
                    yield diag(
                        "R412",
                        f"`{entry}` matches no agent or human of this org",
                        hint=_suggest(entry, known) or "a bare name becomes @name:<server>; check the spelling",
                        **where,
                    )


def packages(ctx: Context) -> Iterable[Diagnostic]:
    for agent in ctx.org.agents():
        pkg = agent.spec.get("package")
        if not isinstance(pkg, str) or not pkg.startswith("file://"):
            continue
        rel = pkg[len("file://") :]
        path = (*agent.path, "package")
        control = next((c for c in rel if ord(c) < 0x20 or ord(c) == 0x7F), None)
        if control is not None:  # a NUL cannot even be looked up: no file of the repository has this name
            yield diag(
                "R413",
                f"package path contains the control character U+{ord(control):04X}",
                hint="write the path of a file inside the repository, e.g. file://./packages/agent.zip",
                **ctx.at(agent.owner, path),
            )
            continue
        normal = posixpath.normpath(rel)
        if rel.startswith("/") or normal == ".." or normal.startswith("../") or ctx.escapes(normal):
            yield diag(
                "R413",
                f"package `{pkg}` points outside the repository",
                hint="keep packages inside the org repository and use a relative path such as file://./packages/agent.zip",
                **ctx.at(agent.owner, path),
            )


def env_secrets(ctx: Context) -> Iterable[Diagnostic]:
    for agent in ctx.org.agents():
        for key, value in sorted((agent.spec.get("env") or {}).items()):
            if not isinstance(value, str):
                continue
            shaped = any(p.search(value) for p in SECRET_SHAPES)
            named = bool(SECRET_KEY_NAME.search(key)) and len(value) >= 16 and " " not in value
            if shaped or named:
                yield diag(
                    "R414",
                    f"env `{key}` of `{agent.name}` looks like a secret (value not shown)",
                    hint="keep secrets out of git: let the gateway hold provider keys, or reference the secret store",
                    **ctx.at(agent.owner, (*agent.path, "env", key)),
                )


def not_empty(ctx: Context) -> Iterable[Diagnostic]:
    if not ctx.unreadable and not any(ctx.declared.values()):
        yield diag(
            "R416", "no Worker, Team, Human or Manager is declared", hint="an empty org is never applied implicitly"
        )


def human_identities(ctx: Context) -> Iterable[Diagnostic]:
    """A Human's Matrix ID must not be an agent's or another Human's: both would be one account.

    The full ID is compared — `@<username or name>:<server>`, or the `matrix-user-id` annotation — so an
    annotated Human naming an account on this server is checked too.
    """
    agents = {ctx.agent_id(a): a for a in ctx.org.agents()}
    seen: dict[str, Resource] = {}
    for name in sorted(ctx.org.humans):
        human = ctx.org.humans[name]
        user_id = ctx.human_id(human)
        annotated = bool(human.annotation("matrix-user-id"))
        if annotated:
            path: tuple[str | int, ...] = ("metadata", "annotations", MATRIX_USER_ID)
        else:
            path = ("spec", "username") if human.spec.get("username") else ("metadata", "name")
        other = seen.get(user_id)
        if user_id in agents:
            clash = f"the agent {_describe(agents[user_id])}"
        elif other is not None:
            clash = f"Human `{other.name}` ({other.file}:{other.line})"
        else:
            seen[user_id] = human
            continue
        yield diag(
            "R417",
            f"Human `{human.name}` would be {user_id}, which is already {clash}",
            hint="point the annotation at the Human's own account"
            if annotated
            else "set a distinct `username` on the Human (its Matrix localpart)",
            **ctx.at(human, path),
        )


def member_names(ctx: Context) -> Iterable[Diagnostic]:
    """A team member's name (not its runtime name) names its container `hiclaw-worker-<name>` and its exposed
    ports: it must be unique across teams. Within one team R402/R404 report it, against a Worker R403."""
    seen: dict[str, Agent] = {}
    for team in sorted(ctx.org.teams.values(), key=lambda r: (r.file, r.index)):
        for agent in team_agents(team):
            first = seen.setdefault(agent.name, agent)
            if first is agent or first.team == agent.team:
                continue
            line, _ = ctx.locate(first.owner, (*first.path, "name"), False)
            yield diag(
                "R418",
                f"team member `{agent.name}` of team `{agent.team}` has the name of the "
                f"{_describe(first)} ({first.owner.file}:{line})",
                hint="rename one of them: a member's name (not its workerName) becomes its container "
                f"hiclaw-worker-{agent.name}, so names are unique across teams",
                **ctx.at(team, (*agent.path, "name")),
            )


def team_names(ctx: Context) -> Iterable[Diagnostic]:
    """A team's runtime name (`teamName`, else its name) names its Team Room and shared storage prefix."""
    seen: dict[str, Resource] = {}
    for team in sorted(ctx.org.teams.values(), key=lambda r: (r.file, r.index)):
        trt = team_runtime_name(team)
        first = seen.setdefault(trt, team)
        if first is team:
            continue
        path = ("spec", "teamName") if team.spec.get("teamName") else ("metadata", "name")
        yield diag(
            "R419",
            f"team `{team.name}` would be `{trt}`, which is already the team name of Team `{first.name}` "
            f"({first.file}:{first.line})",
            hint=f"set a distinct `teamName`: it names the Team Room #hiclaw-team-{trt} "
            f"and the shared storage prefix teams/{trt}/",
            **ctx.at(team, path),
        )


def expose_ports(ctx: Context) -> Iterable[Diagnostic]:
    """Each exposed port gets its own gateway domain, service source and route: once per agent, 1-65535."""
    for agent in ctx.org.agents():
        seen: dict[int, int] = {}
        for i, entry in enumerate(agent.spec.get("expose") or []):
            port = entry.get("port")
            if not isinstance(port, int) or isinstance(port, bool):
                continue  # the schema reports the type
            if 1 <= port <= MAX_PORT and port not in seen:
                seen[port] = i
                continue
            if port in seen:
                message = f"`{agent.name}` exposes port {port} twice (first at expose[{seen[port]}])"
                hint = "list each port once: a port has one gateway domain and route, whatever its protocol"
            else:
                message = f"`{agent.name}` exposes port {port}, which is not a TCP port"
                hint = f"use a port from 1 to {MAX_PORT}"
            yield diag("R420", message, hint=hint, **ctx.at(agent.owner, (*agent.path, "expose", i, "port")))


# The shortest access key id each identity API takes (SeaweedFS: "AccessKeyId must be 4 to 128 alphanumeric
# characters", as Ceph RGW and AWS; MinIO: 3). Runtime names are at most 63 characters, under every maximum.
ACCESS_KEY_MINIMUM = {"aws-iam": 4, "minio-admin": 3}


def storage_access_keys(ctx: Context) -> Iterable[Diagnostic]:
    """With a store's identity API, each agent's access key id (its runtime name, `-` as `X`) must be long
    enough for the store: caught here, not as the store's refusal half-way through an apply."""
    minimum = ACCESS_KEY_MINIMUM.get(ctx.storage_identity, 0)
    for agent in ctx.org.agents() if minimum else ():
        rt = agent.runtime_name
        if len(rt) < minimum:
            yield diag(
                "R422",
                f"runtime name `{rt}` is {len(rt)} character{'s' if len(rt) != 1 else ''}: its storage access key "
                f"would be shorter than the {minimum} characters `storage.identity: {ctx.storage_identity}` takes",
                hint=f"give the agent a runtime name of at least {minimum} characters"
                + (" (`workerName`, or rename it)" if agent.role is not Role.MANAGER else ""),
                **ctx.at(agent.owner, _name_path(agent)),
            )


RULES: tuple[Rule, ...] = (
    runtime_names,
    team_members,
    human_access,
    member_names,
    team_names,
    team_humans,
    single_manager,
    human_identities,
    expose_ports,
    storage_access_keys,
    channel_policies,
    packages,
    env_secrets,
    not_empty,
)


def check(ctx: Context) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for rule in RULES:
        out.extend(rule(ctx))
    return out


def _policies(org: Org) -> Iterable[tuple[Resource, tuple[str | int, ...], Mapping[str, Any]]]:
    for res in org.workers.values():
        if res.spec.get("channelPolicy"):
            yield res, ("spec", "channelPolicy"), res.spec["channelPolicy"]
    for team in org.teams.values():
        if team.spec.get("channelPolicy"):
            yield team, ("spec", "channelPolicy"), team.spec["channelPolicy"]
    for agent in org.agents():
        if agent.role in (Role.LEADER, Role.WORKER) and agent.spec.get("channelPolicy"):
            yield agent.owner, (*agent.path, "channelPolicy"), agent.spec["channelPolicy"]


def _name_path(agent: Agent) -> tuple[str | int, ...]:
    if agent.role in (Role.LEADER, Role.WORKER):
        return (*agent.path, "workerName" if agent.spec.get("workerName") else "name")
    if agent.role is Role.STANDALONE and agent.spec.get("workerName"):
        return ("spec", "workerName")
    return ("metadata", "name")


def _reported_elsewhere(first: Agent, second: Agent) -> bool:
    """A runtime-name clash that a more specific rule already reports: one member listed twice in a team
    (team_members: R404 or R402), a team member named like a standalone Worker (team_members: R403), two
    members of different teams with one name (member_names: R418), or a second Manager (single_manager: R410)."""
    if first.role is Role.MANAGER and second.role is Role.MANAGER:
        return True
    if first.name != second.name or Role.MANAGER in (first.role, second.role):
        return False
    return first.team is not None or second.team is not None


def _describe(agent: Agent) -> str:
    if agent.role is Role.STANDALONE:
        return f"Worker `{agent.name}`"
    if agent.role is Role.MANAGER:
        return f"Manager `{agent.name}`"
    return f"{'leader' if agent.role is Role.LEADER else 'worker'} `{agent.name}` of team `{agent.team}`"


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""
