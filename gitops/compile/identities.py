"""Who is who (SPEC §3.1): Matrix IDs, runtime names, consumer, container and secret names, and Matrix accounts.

`Chart` resolves every identity of the org once — agents, teams with their admins and human members, humans
— so the other compile modules only look names up. It also builds the `matrix/user/*` objects: accounts are
identities, and the rooms module needs their keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gitops.objects import ManagedObject, Provider, make_key, secret_ref
from gitops.org import Agent, Org, Resource, Role, human_localpart, team_agents, team_runtime_name
from gitops.settings.model import RuntimeSettings, Settings

ORG = "org"  # owner of shared objects (bucket, shared prefixes, AI routes, MCP servers)
DEFAULT_MODEL = "qwen3.6-plus"  # upstream HICLAW_DEFAULT_MODEL
GATEWAY_MODEL_PREFIX = "hiclaw-gateway/"
MANAGER_LOCALPART = "manager"


def mxid(localpart: str, domain: str) -> str:
    return f"@{localpart}:{domain}"


def human_mxid(human: Resource, domain: str) -> str:
    """A Human's Matrix ID: the `matrix-user-id` annotation (an existing account), else `@<username or name>:D`."""
    return human.annotation("matrix-user-id") or mxid(human_localpart(human), domain)


def consumer_name(agent: Agent) -> str:
    return "manager" if agent.role is Role.MANAGER else f"worker-{agent.runtime_name}"


def container_name(agent: Agent) -> str:
    """Named by CR / member name, as upstream does (reference §2.5), not by runtime name."""
    if agent.role is Role.MANAGER:
        return "hiclaw-manager" if agent.name == "default" else f"hiclaw-manager-{agent.name}"
    return f"hiclaw-worker-{agent.name}"


def agent_runtime(agent: Agent, runtime: RuntimeSettings) -> str:
    if agent.role is Role.MANAGER:
        return str(agent.spec.get("runtime") or runtime.manager_runtime)
    if agent.role is Role.LEADER:
        return runtime.leader_runtime  # leaders declare no runtime: they run the leader runtime
    return str(agent.spec.get("runtime") or runtime.default_runtime)


def agent_model(agent: Agent) -> str:
    model = str(agent.spec.get("model") or DEFAULT_MODEL)
    return model.removeprefix(GATEWAY_MODEL_PREFIX)


def agent_prefix(agent: Agent) -> str:
    return f"agents/{agent.runtime_name}"


# Names of generated credentials in the secret store (never values).
def matrix_password(localpart: str) -> str:
    return secret_ref(f"matrix/{localpart}/password")


def matrix_token(agent: Agent) -> str:
    return secret_ref(f"matrix/{agent.runtime_name}/token")


def gateway_key(agent: Agent) -> str:
    return secret_ref(f"gateway/{consumer_name(agent)}/key")


def storage_secret(agent: Agent) -> str:
    return secret_ref(f"storage/{agent.runtime_name}/secret-key")


def managed(
    provider: Provider,
    type_: str,
    name: str,
    spec: Mapping[str, Any],
    owner: Resource | None,
    depends_on: Sequence[str] = (),
    hash: str = "",
    plain: bool = False,
) -> ManagedObject:
    """A managed object owned by an org resource (None: shared by the whole org), honouring its prune guard.

    `hash` (and `plain`) are the spec's `spec_digest` when the caller already computed it.
    """
    needs = tuple(sorted(set(depends_on)))
    if owner is None:
        return ManagedObject(provider, type_, name, spec, ORG, needs, hash=hash, plain=plain)
    prune = owner.annotation("prune") != "disabled"
    return ManagedObject(provider, type_, name, spec, owner.ref, needs, prune, hash=hash, plain=plain)


@dataclass(frozen=True, slots=True)
class Identities:
    """The identities every part of the org sees: server name, Global Admin, actor, and the Manager's ID if any."""

    domain: str
    admin: str
    actor: str
    manager_id: str | None

    def id(self, agent: Agent) -> str:
        return mxid(agent.runtime_name, self.domain)

    def entry(self, value: str) -> str:
        """A channelPolicy entry: `@...` verbatim, a bare name becomes `@<name>:D`."""
        return value if value.startswith("@") else mxid(value, self.domain)


@dataclass(frozen=True, slots=True)
class Team:
    """A team with its identities resolved: leader, workers, Team Admin and human members."""

    resource: Resource
    runtime_name: str
    leader: Agent
    workers: tuple[Agent, ...]
    admin: str | None  # the Team Admin's Matrix ID, when the team names one
    human_members: frozenset[str]
    peer_mentions: bool

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def policy(self) -> Mapping[str, Any]:
        return self.resource.spec.get("channelPolicy") or {}


@dataclass(frozen=True, slots=True)
class Chart:
    """The org chart with every identity resolved once."""

    domain: str
    admin: str  # the Global Admin
    actor: str  # the account the reconciler acts through (exempt from membership rules)
    manager: Agent | None
    standalone: tuple[Agent, ...]
    teams: tuple[Team, ...]
    humans: Mapping[str, str]  # Human name -> Matrix ID
    human_resources: tuple[Resource, ...]

    @classmethod
    def of(cls, org: Org, settings: Settings) -> Chart:
        domain = settings.server_name
        actor = settings.matrix.actor if settings.matrix else settings.admin_user
        humans = {name: human_mxid(org.humans[name], domain) for name in sorted(org.humans)}
        manager = org.manager
        return cls(
            domain=domain,
            admin=settings.admin_id,
            actor=mxid(actor, domain),
            manager=Agent(Role.MANAGER, manager.name, MANAGER_LOCALPART, manager.spec, manager, ("spec",))
            if manager
            else None,
            standalone=tuple(a for a in org.agents() if a.role is Role.STANDALONE),
            teams=tuple(t for t in (_team(org.teams[n], humans, domain) for n in sorted(org.teams)) if t),
            humans=humans,
            human_resources=tuple(org.humans[n] for n in sorted(org.humans)),
        )

    def id(self, agent: Agent) -> str:
        return mxid(agent.runtime_name, self.domain)

    @property
    def manager_id(self) -> str | None:
        return mxid(MANAGER_LOCALPART, self.domain) if self.manager else None

    @property
    def identities(self) -> Identities:
        return Identities(self.domain, self.admin, self.actor, self.manager_id)

    def entry(self, value: str) -> str:
        """A channelPolicy entry: `@...` verbatim, a bare name becomes `@<name>:D`."""
        return value if value.startswith("@") else mxid(value, self.domain)

    def agents(self) -> Iterator[Agent]:
        """Every agent in a stable order: Manager, standalone Workers, then each team's leader and workers."""
        if self.manager:
            yield self.manager
        yield from self.standalone
        for team in self.teams:
            yield team.leader
            yield from team.workers


def _team(res: Resource, humans: Mapping[str, str], domain: str) -> Team | None:
    agents = list(team_agents(res))
    if not agents or agents[0].role is not Role.LEADER:
        return None  # schema-valid teams always have a leader

    def human(entry: Mapping[str, Any]) -> str | None:
        name = entry.get("name")
        if name and name in humans:
            return humans[name]
        if entry.get("matrixUserId"):
            return str(entry["matrixUserId"])
        return mxid(name, domain) if name else None

    members = (human(m) for m in res.spec.get("humanMembers") or [])
    return Team(
        resource=res,
        runtime_name=team_runtime_name(res),
        leader=agents[0],
        workers=tuple(agents[1:]),
        admin=human(res.spec.get("admin") or {}),
        human_members=frozenset(m for m in members if m),
        peer_mentions=res.spec.get("peerMentions", True) is not False,
    )


def agent_user(ids: Chart | Identities, agent: Agent) -> ManagedObject:
    localpart = agent.runtime_name
    spec = {"user_id": ids.id(agent), "displayname": localpart, "kind": "agent", "password": matrix_password(localpart)}
    account = managed(Provider.MATRIX, "user", localpart, spec, agent.owner)
    # Logging the agent in yields its access token: an output of the account, consumed by its files and container.
    return replace(account, produces=(f"matrix/{localpart}/token",))


def human_users(chart: Chart) -> list[ManagedObject]:
    out: list[ManagedObject] = []
    for human in _registered_humans(chart):
        localpart = human_localpart(human)
        spec = {
            "user_id": chart.humans[human.name],
            "displayname": str(human.spec.get("displayName") or localpart),
            "kind": "human",
            "password": matrix_password(localpart),
        }
        out.append(managed(Provider.MATRIX, "user", localpart, spec, human))
    return out


def _registered_humans(chart: Chart) -> Iterator[Resource]:
    """Humans that get an account: not those with an existing one (annotation), nor the admin or the actor."""
    preexisting = {chart.admin, chart.actor}
    for human in chart.human_resources:
        if not human.annotation("matrix-user-id") and chart.humans[human.name] not in preexisting:
            yield human


def account_keys(chart: Chart) -> dict[str, str]:
    """Matrix ID -> key of the account object that registers it (agents and registered Humans), without
    building the objects."""
    keys = {chart.id(agent): make_key(Provider.MATRIX, "user", agent.runtime_name) for agent in chart.agents()}
    for human in _registered_humans(chart):
        keys[chart.humans[human.name]] = make_key(Provider.MATRIX, "user", human_localpart(human))
    return keys
