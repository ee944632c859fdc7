"""Settings: one YAML file plus environment overrides; a provider section left out disables that provider.

With no settings at all, identities use upstream HiClaw's defaults (SPEC §7), so offline plans work in a
pull-request job with no configuration. Every key is documented in docs/settings.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gitops.objects import Provider

DEFAULT_SERVER_NAME = "matrix-local.hiclaw.io:8080"
DEFAULT_IMAGES = {
    "openclaw": "hiclaw/worker-agent:latest",
    "copaw": "hiclaw/copaw-worker:latest",
    "hermes": "hiclaw/hermes-worker:latest",
}
DEFAULT_ROUTE = "default-ai-route"


@dataclass(frozen=True, slots=True)
class SourceSettings:
    url: str = ""
    branch: str = "main"
    path: str = ""
    poll_interval: float = 30.0
    jitter: float = 0.1
    token_env: str = ""
    token_file: str = ""
    ssh_key_file: str = ""
    ssh_public_key_file: str = ""
    ssh_known_hosts: str = ""
    depth: int = 0
    allowed_signers: str = ""
    webhook_secret_env: str = ""
    webhook_secret_file: str = ""
    token_username: str = "x-access-token"
    ssh_user: str = "git"
    ssh_passphrase_env: str = ""
    ssh_passphrase_file: str = ""
    gpg_home: str = ""
    allow_force_push: bool = True
    timeout: float = 30.0
    backoff_max: float = 300.0

    @property
    def verify_signatures(self) -> bool:
        return bool(self.allowed_signers or self.gpg_home)


@dataclass(frozen=True, slots=True)
class StatusSettings:
    branch: str = "hiclaw-status"
    path: str = ""
    author_name: str = "hiclaw-gitops"
    author_email: str = "hiclaw-gitops@localhost"
    enabled: bool = True
    push_retries: int = 5
    listen: str = "127.0.0.1:9180"


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    backend: str = "docker"
    instance: str = "hiclaw-gitops"
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    manager_image: str = ""
    leader_runtime: str = "copaw"
    default_runtime: str = "openclaw"
    manager_runtime: str = "openclaw"
    docker_url: str = ""
    network: str = "hiclaw-net"
    namespace: str = "hiclaw"
    concurrency: int = 4
    restart_policy: str = "unless-stopped"
    # Kubernetes only: what every agent's pod gets besides its compiled spec (docs/kubernetes.md).
    resources: Mapping[str, Any] = field(default_factory=dict)  # {"requests": {...}, "limits": {...}}
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaderElectionSettings:
    """Several daemon replicas, one active (docs/kubernetes.md): a coordination.k8s.io Lease."""

    enabled: bool = False
    lease_name: str = "hiclaw-gitops"
    namespace: str = ""  # empty: POD_NAMESPACE, else runtime.namespace
    identity: str = ""  # empty: POD_NAME, else HOSTNAME
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    replicate_state: bool = False  # snapshots of the state in Secrets, restored by a new leader (needs secret_store)
    replicate_interval: float = 30.0  # at most this often while a long pass keeps changing the state


@dataclass(frozen=True, slots=True)
class SecretStoreSettings:
    """Where generated credentials live: `file` (secrets.db in the state directory) or `kubernetes` (Secrets)."""

    backend: str = "file"
    namespace: str = ""  # empty: runtime.namespace
    instance: str = ""  # empty: runtime.instance


@dataclass(frozen=True, slots=True)
class MatrixSettings:
    url: str = ""
    agent_url: str = ""
    server_name: str = DEFAULT_SERVER_NAME
    admin_user: str = "admin"
    actor_user: str = ""
    admin_password_env: str = ""
    admin_password_file: str = ""
    registration_shared_secret_env: str = ""
    registration_shared_secret_file: str = ""
    concurrency: int = 4
    actor_password_env: str = ""
    actor_password_file: str = ""
    actor_token_env: str = ""
    actor_token_file: str = ""
    registration: str = "token"
    registration_token_env: str = ""
    registration_token_file: str = ""
    deactivate_removed: bool = False
    timeout: float = 30.0
    retries: int = 5

    @property
    def actor(self) -> str:
        return self.actor_user or self.admin_user

    @property
    def agents_url(self) -> str:
        """The homeserver URL written into agents' configuration: the reconciler's own URL (often loopback)
        is usually unreachable from inside an agent's container."""
        return self.agent_url or self.url


@dataclass(frozen=True, slots=True)
class StorageSettings:
    endpoint: str = ""
    agent_endpoint: str = ""
    agent_prefix: str = ""  # HICLAW_STORAGE_PREFIX: the agents' mc alias and bucket; empty means hiclaw/<bucket>
    secure: bool = False
    region: str = "us-east-1"
    bucket: str = "hiclaw-storage"
    access_key_env: str = ""
    access_key_file: str = ""
    secret_key_env: str = ""
    secret_key_file: str = ""
    admin_api: bool = False  # legacy spelling of identity: minio-admin
    identity: str = ""  # "" (no per-agent users), "aws-iam" or "minio-admin"
    concurrency: int = 8

    @property
    def identity_api(self) -> str:
        """The identity API for per-agent users and policies, "" when there is none."""
        return self.identity or ("minio-admin" if self.admin_api else "")

    @property
    def agents_prefix(self) -> str:
        """The storage prefix agents are given (HICLAW_STORAGE_PREFIX): their `mc` alias, then the bucket."""
        return self.agent_prefix or f"hiclaw/{self.bucket}"

    @property
    def agents_endpoint(self) -> str:
        """The S3 endpoint written into agents' environment (see MatrixSettings.agents_url)."""
        return self.agent_endpoint or self.endpoint


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    models: tuple[str, ...] = ("*",)

    def serves(self, model: str) -> bool:
        return "*" in self.models or model in self.models


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    console_url: str = ""
    ai_gateway_url: str = "http://aigw-local.hiclaw.io:8080"
    username: str = "admin"
    password_env: str = ""
    password_file: str = ""
    routes: tuple[Route, ...] = (Route(DEFAULT_ROUTE),)
    concurrency: int = 4


@dataclass(frozen=True, slots=True)
class NotifySettings:
    room: str = ""
    after_failures: int = 3


@dataclass(frozen=True, slots=True)
class ChatOpsSettings:
    """Commands in the admin's Matrix room (docs/chatops.md); needs the `matrix` section."""

    enabled: bool = True
    room: str = ""  # empty: notify.room, else the Manager DM
    prefix: str = "!gitops"
    allowed: tuple[str, ...] = ()  # Matrix IDs; empty: the Global Admin
    level1_humans: bool = False
    approval_ttl: float = 3600.0
    max_age: float = 600.0  # a command older than this (sent while nobody listened) is not carried out
    per_minute: int = 10  # commands per sender and minute; more are refused
    poll_timeout: float = 20.0  # the long poll's wait, seconds


@dataclass(frozen=True, slots=True)
class PruneSettings:
    enabled: bool = True
    max_agents: int = 5
    max_fraction: float = 0.25
    purge_storage: bool = False


@dataclass(frozen=True, slots=True)
class DriftSettings:
    every_polls: int = 10
    mode: str = "report"


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings. `runtime`, `matrix`, `storage` and `gateway` are None when their section is absent."""

    source: SourceSettings = field(default_factory=SourceSettings)
    state_dir: str = ".hiclaw-state"
    status: StatusSettings = field(default_factory=StatusSettings)
    runtime: RuntimeSettings | None = None
    matrix: MatrixSettings | None = None
    storage: StorageSettings | None = None
    gateway: GatewaySettings | None = None
    leader_election: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
    secret_store: SecretStoreSettings = field(default_factory=SecretStoreSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    chatops: ChatOpsSettings = field(default_factory=ChatOpsSettings)

    # Identities are needed even when a provider is disabled (offline plans): fall back to upstream defaults.
    @property
    def server_name(self) -> str:
        return (self.matrix or MatrixSettings()).server_name

    @property
    def admin_user(self) -> str:
        return (self.matrix or MatrixSettings()).admin_user

    @property
    def admin_id(self) -> str:
        return f"@{self.admin_user}:{self.server_name}"

    @property
    def bucket(self) -> str:
        return (self.storage or StorageSettings()).bucket

    @property
    def runtime_or_default(self) -> RuntimeSettings:
        return self.runtime or RuntimeSettings()

    @property
    def gateway_or_default(self) -> GatewaySettings:
        return self.gateway or GatewaySettings()

    @property
    def providers(self) -> frozenset[Provider]:
        enabled = {
            Provider.RUNTIME: self.runtime,
            Provider.MATRIX: self.matrix,
            Provider.STORAGE: self.storage,
            Provider.GATEWAY: self.gateway,
        }
        return frozenset(p for p, section in enabled.items() if section is not None)

    def with_all_providers(self) -> Settings:
        """The same settings with every provider section present (defaults where absent): for offline plans."""
        return replace(
            self,
            runtime=self.runtime_or_default,
            matrix=self.matrix or MatrixSettings(),
            # Offline plans show what a real store would get: per-agent users and their policies (SPEC §3.4).
            storage=self.storage or StorageSettings(identity="aws-iam"),
            gateway=self.gateway_or_default,
        )


_SECTIONS: dict[str, type] = {
    "source": SourceSettings,
    "status": StatusSettings,
    "runtime": RuntimeSettings,
    "matrix": MatrixSettings,
    "storage": StorageSettings,
    "gateway": GatewaySettings,
    "leader_election": LeaderElectionSettings,
    "secret_store": SecretStoreSettings,
    "notify": NotifySettings,
    "prune": PruneSettings,
    "drift": DriftSettings,
    "chatops": ChatOpsSettings,
}


def from_mapping(data: Mapping[str, Any]) -> Settings:
    """Build settings from an already-validated mapping (see gitops.settings.load for the file loader)."""
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name not in data:
            continue
        section = dict(data[name] or {})
        if cls is GatewaySettings and "routes" in section:
            section["routes"] = tuple(
                Route(r["name"], tuple(r.get("models") or ("*",))) for r in section["routes"]
            )
        if cls is ChatOpsSettings and "allowed" in section:
            section["allowed"] = tuple(section["allowed"])
        if cls is RuntimeSettings and "images" in section:
            section["images"] = {**DEFAULT_IMAGES, **section["images"]}
        known = {f.name for f in fields(cls)}
        kwargs[name] = cls(**{k: v for k, v in section.items() if k in known})
    if "state_dir" in data:
        kwargs["state_dir"] = str(data["state_dir"])
    return Settings(**kwargs)
