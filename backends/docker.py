"""The Docker backend: one container per agent, observed by label, created, started, stopped and removed by name.

Provider `runtime`, object type `container`, key `runtime/container/<container name>`. See
docs/runtime-docker.md for the operator's view; the design in short:

Observation is one sparse `GET /containers/json?all=1&filters=label=hiclaw.io/managed-by=<instance>` per
pass, never one call per container. Containers without our managed-by label (or with another instance's)
are never listed, changed or removed — a create that finds one under its name fails permanently.

Labels. A container carries the spec's labels (ownership and identity, set by the compiler; the
managed-by label is always this instance) plus two of ours, written when the container is created:
  - `hiclaw.io/spec-hash`: `obj.hash`, the hash of the full desired spec as applied (state included) and of
    `hiclaw.io/consumed`, the digest of the secret values the container was given (a re-issued credential
    changes it, so the container is re-created with the new value);
  - `hiclaw.io/applied-spec`: the desired spec as applied, canonical JSON. Specs hold only `secret://`
    references, never secret values, so the label holds none either; resolved values reach only the
    container's environment.
Docker labels cannot change after creation, but the container's status can. So:
  - `recorded_hash` is the spec-hash label, except when the applied spec says `enforce_state`: then it is
    the hash of the applied spec with `state` replaced by the observed state (running → Running, anything
    else → Sleeping). A state change or state drift of an enforced agent is a start or stop, and the
    executor's verify (recorded hash == obj.hash) holds afterwards without re-creating anything.
  - An agent whose state is not enforced may sleep and wake on its own (upstream's idle timeout) without
    its recorded hash changing. A declared state change in git for such an agent re-creates its container
    in the new state — the only way to record the new declared state on an immutable label. Agents keep no
    state in their container (config and memory live in object storage), so this costs one restart.
  - Any other change — image, env, runtime, ports, labels, and `config_hash` (the
    agent's files: soul, skills, allow-lists) — re-creates the container under the same name with the same
    identity env: a config-only change restarts the agent, and a runtime switch keeps its Matrix account,
    storage and gateway consumer, which hang off the name.
  - The record is trusted only while Docker agrees with it: if the observed image, labels or network differ
    from the applied spec, or the two labels disagree, or either is missing, `recorded_hash` is None and the
    plan re-creates the container. (A rebuilt `:latest` tag shows as an image ID: image drift.)
One rule decides between re-creating and reusing a container, for every action and for a create that finds
the container already there (a run killed after creating it, before the inventory recorded it): reuse it,
moving only its state, when the hash it would record in the desired state equals `obj.hash`; else remove
it and create it anew.

State: `Running` → started (a paused container is unpaused); `Sleeping` → `stop(timeout=10)`, the container
kept (a never-started container also counts as sleeping); `Stopped` → the container is removed, so a
Stopped agent is observed as absent.

Images are never pulled (no registry is reachable, and a GitOps apply should not depend on one): a missing
image is a PermanentError naming the image and how to build or tag it. The network (default `hiclaw-net`) is
created as a labelled bridge network when missing; this process never sends traffic to it.

Every Docker SDK or transport exception is classified in one function, `classify`: 404 for an image →
permanent; a connection failure, timeout, 409 conflict, 429 or 5xx → transient (except a port already
allocated or an entrypoint that cannot start, which retrying cannot fix); other 4xx → permanent; an answer
that is not JSON → transient. An answer of the wrong shape (a mapping where the API returns a list, a container
whose labels are not a mapping, a create without an Id) is a PermanentError naming the request and the object,
never an exception of the SDK's or ours. Messages are scrubbed of resolved secret values, and env values are
never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gitops.objects import ManagedObject, Provider, canonical_json, make_key, object_hash
from gitops.providers.protocol import (
    ApplyResult,
    BackendContext,
    Observed,
    Outcome,
    PermanentError,
    Resolve,
    Scope,
    TransientError,
    TypeTraits,
)
from gitops.settings.model import RuntimeSettings

if TYPE_CHECKING:  # the SDK is imported when a backend is used, not when its declarations are read
    import docker.errors

log = logging.getLogger(__name__)

TYPE = "container"
DEFAULT_SOCKET = "/var/run/docker.sock"
LABEL_MANAGED_BY = "hiclaw.io/managed-by"
LABEL_SPEC_HASH = "hiclaw.io/spec-hash"
LABEL_CONSUMED = "hiclaw.io/consumed"  # digest of the secret values the container carries (never a value)
LABEL_APPLIED = "hiclaw.io/applied-spec"
INTERNAL_LABELS = frozenset({LABEL_SPEC_HASH, LABEL_APPLIED, LABEL_CONSUMED})

RUNNING, SLEEPING, STOPPED = "Running", "Sleeping", "Stopped"
NEVER_STARTED = "Created"  # observed state of a container created but never started (an apply cut short)
STATES = (RUNNING, SLEEPING, STOPPED)
STOP_TIMEOUT = 10
CLIENT_TIMEOUT = 60  # seconds per Docker API call; a stop waits up to STOP_TIMEOUT inside one call
SPECIAL_NETWORKS = frozenset({"", "bridge", "host", "none", "default"})
_RESTART_POLICIES = frozenset({"no", "always", "unless-stopped", "on-failure"})

T = TypeVar("T")


# Error classification ------------------------------------------------------------------------------------


def classify(
    exc: BaseException, doing: str, url: str = "", secrets: Iterable[str] = ()
) -> TransientError | PermanentError:
    """The one place a Docker SDK or transport exception becomes a TransientError or a PermanentError.

    `doing` says what was attempted ("start container hiclaw-worker-alice"); `secrets` are values scrubbed
    from the message (resolved credentials that an engine message might echo)."""
    import docker.errors
    import requests
    engine = f"the Docker engine at {url}" if url else "the Docker engine"
    if isinstance(exc, json.JSONDecodeError):  # requests' JSONDecodeError is one too (and a RequestException)
        error: TransientError | PermanentError = TransientError(
            f"{doing}: {engine} answered with malformed JSON ({exc.msg} at character {exc.pos}); nothing was "
            "taken from the answer"
        )
    elif isinstance(exc, docker.errors.ImageNotFound):
        error = PermanentError(
            f"{doing}: image not found ({_explanation(exc)}); images are never pulled: build or tag it locally"
        )
    elif isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        detail = _explanation(exc)
        lowered = detail.lower()
        if status == 429:
            error = TransientError(f"{doing}: rate-limited by {engine}: {detail}", _retry_after(exc))
        elif status == 409:
            error = TransientError(f"{doing}: conflict ({detail}); another operation is in progress")
        elif status == 404:
            error = TransientError(f"{doing}: {detail} (it vanished while this pass worked; observe again)")
        elif any(s in lowered for s in ("port is already allocated", "address already in use")):
            error = PermanentError(f"{doing}: {detail} (free the port or change the agent's ports)")
        elif any(s in lowered for s in ("executable file not found", "no such file or directory", "exec format")):
            error = PermanentError(f"{doing}: the image cannot start: {detail}")
        elif status >= 500 or status == 0:
            error = TransientError(f"{doing}: {engine} failed ({status}): {detail}", _retry_after(exc))
        else:
            error = PermanentError(f"{doing}: refused by {engine} ({status}): {detail}")
    elif isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        error = TransientError(f"{doing}: {engine} is unreachable ({type(exc).__name__}: {exc})")
    elif isinstance(exc, requests.exceptions.RequestException):  # an OSError too: test it first
        error = TransientError(f"{doing}: talking to {engine} failed ({type(exc).__name__}: {exc})")
    elif isinstance(exc, docker.errors.DockerException) and "fetching server api version" in str(exc).lower():
        error = TransientError(f"{doing}: {engine} is unreachable or did not answer the API version request "
                               f"({type(exc).__name__}: {exc})")
    elif isinstance(exc, OSError):
        error = TransientError(f"{doing}: {engine} is unreachable ({type(exc).__name__}: {exc})")
    else:
        error = PermanentError(f"{doing}: {type(exc).__name__}: {exc}")
    scrubbed = _scrub(str(error), secrets)
    if scrubbed != str(error):
        error.args = (scrubbed,)
    return error


class UnexpectedAnswer(PermanentError):
    """The engine answered with JSON of a shape its API does not describe."""


def _shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def listing(found: Any, doing: str, what: str) -> list[Mapping[str, Any]]:
    """The engine's answer as a list of mappings (one per `what`), or UnexpectedAnswer naming the request."""
    if not isinstance(found, list):
        raise UnexpectedAnswer(f"{doing}: the Docker engine answered with {_shape(found)}, not a list of {what}s")
    for i, item in enumerate(found):
        if not isinstance(item, Mapping):
            raise UnexpectedAnswer(f"{doing}: item {i} of the Docker engine's answer is {_shape(item)}, not a {what}")
    return found


def _explanation(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc).strip()


def _retry_after(exc: docker.errors.APIError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    try:
        return float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for value in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(value, "(redacted)")
    return text


# Hashes, labels and observed facts -----------------------------------------------------------------------


def observed_state(status: str) -> str:
    """Docker's container status in the spec's terms: running → Running; created, exited, paused, dead → Sleeping."""
    return RUNNING if status in ("running", "restarting") else SLEEPING


def container_labels(spec: Mapping[str, Any], instance: str) -> dict[str, str]:
    """The labels a container for `spec` carries, besides our internal ones."""
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    labels[LABEL_MANAGED_BY] = instance
    return labels


@dataclass(frozen=True, slots=True)
class Facts:
    """One container as the sparse list shows it."""

    id: str
    name: str
    labels: Mapping[str, str]
    image: str
    network: str
    status: str

    @classmethod
    def of(cls, attrs: Mapping[str, Any], doing: str = "list containers") -> Facts:
        """The facts of one entry of a container list; UnexpectedAnswer naming the container when a field
        has a shape the engine's API does not give it."""
        ident = attrs.get("Id")
        what = f"container {ident[:12]}" if isinstance(ident, str) and ident else "a container without an Id"

        def unexpected(field: str, value: Any, expected: str) -> UnexpectedAnswer:
            return UnexpectedAnswer(f"{doing}: {what}: the Docker engine gave `{field}` as {_shape(value)}, "
                                    f"not {expected}")

        names = attrs.get("Names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise unexpected("Names", names, "a list of strings")
        # A linked container also shows as "/other/alias"; its own name has a single leading slash.
        own = next((n for n in names if n.count("/") == 1), names[0] if names else "")
        if own:
            what = f"container {own.lstrip('/')}"
        labels = attrs.get("Labels") or {}
        if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
            raise unexpected("Labels", labels, "a mapping of strings")
        host = attrs.get("HostConfig") or {}
        if not isinstance(host, Mapping):
            raise unexpected("HostConfig", host, "a mapping")
        fields = {"Id": attrs.get("Id", ""), "Image": attrs.get("Image", ""), "State": attrs.get("State", ""),
                  "HostConfig.NetworkMode": host.get("NetworkMode", "")}
        for field, value in fields.items():
            if not isinstance(value, str):
                raise unexpected(field, value, "a string")
        return cls(
            id=fields["Id"],
            name=own.lstrip("/"),
            labels={str(k): v for k, v in labels.items()},
            image=fields["Image"],
            network=fields["HostConfig.NetworkMode"],
            status=fields["State"],
        )

    @property
    def user_labels(self) -> dict[str, str]:
        return {k: v for k, v in sorted(self.labels.items()) if k not in INTERNAL_LABELS}

    @property
    def consumed(self) -> str:
        return self.labels.get(LABEL_CONSUMED, "")

    @property
    def state(self) -> str:
        return observed_state(self.status)

    def applied(self, instance: str, network: str = "") -> dict[str, Any] | None:
        """The applied spec recorded on the container, if it is intact and Docker still agrees with it."""
        text, recorded = self.labels.get(LABEL_APPLIED), self.labels.get(LABEL_SPEC_HASH)
        if not text or not recorded:
            return None
        try:  # a label anyone with access to the engine may have written: any text at all
            applied = json.loads(text)
            if not isinstance(applied, dict) or object_hash(applied, self.consumed) != recorded:
                return None
        except (ValueError, TypeError, RecursionError):
            return None
        # The image's own labels are merged into the container's, so only the labels we set are compared.
        agrees = (
            str(applied.get("image", "")) == self.image
            and all(self.labels.get(k) == v for k, v in container_labels(applied, instance).items())
            and network in ("", self.network)
        )
        return applied if agrees else None

    def recorded_hash(self, instance: str, network: str, state: str | None = None) -> str | None:
        """The hash this container certifies in `state` (default: its observed state); see the module doc."""
        applied = self.applied(instance, network)
        if applied is None:
            return None
        if applied.get("enforce_state") is True:
            return object_hash({**applied, "state": state or self.state}, self.consumed)
        return self.labels[LABEL_SPEC_HASH]

    def observed_spec(self, instance: str, network: str) -> dict[str, Any]:
        """What can be seen, in the desired spec's shape: the applied record (secret references, never values)
        overlaid with what Docker shows — image, labels and state. Without an intact record: those three
        alone, with every label (the image's included)."""
        applied = self.applied(instance, network)
        labels = self.user_labels
        if applied is not None:  # leave out the labels the image brought
            labels = {k: v for k, v in labels.items() if k in container_labels(applied, instance)}
        state = self.state
        if applied is not None and applied.get("state") == "Running" and self.status == "created":
            state = NEVER_STARTED  # created but never started: an apply cut short, not an agent asleep
        seen = {"image": self.image, "labels": labels, "state": state}
        return {**applied, **seen} if applied is not None else seen


def _restart_policy(value: str) -> dict[str, Any]:
    name, _, count = value.partition(":")
    if name not in _RESTART_POLICIES or (count and (name != "on-failure" or not count.isdigit())):
        raise PermanentError(
            f"restart policy {value!r} is not one of no, always, unless-stopped, on-failure[:N]"
        )
    policy: dict[str, Any] = {"Name": name}
    if count:
        policy["MaximumRetryCount"] = int(count)
    return policy


def _ports(ports: Iterable[Mapping[str, Any]]) -> tuple[list[Any], dict[str, Any]]:
    """Container ports to expose, and host bindings for those with a `host` port (never a random one)."""
    exposed: list[Any] = []
    bindings: dict[str, Any] = {}
    for port in ports:
        try:
            container = int(port["container"])
        except (KeyError, TypeError, ValueError):
            raise PermanentError(f"port {dict(port)!r} has no container port") from None
        protocol = str(port.get("protocol") or "tcp")
        exposed.append((container, protocol) if protocol != "tcp" else container)
        if port.get("host"):
            host = int(port["host"])
            bindings[f"{container}/{protocol}"] = (str(port["host_ip"]), host) if port.get("host_ip") else host
    return exposed, bindings


@dataclass(frozen=True, slots=True)
class Creation:
    """Everything a container is created with, worked out (and validated) before anything is touched."""

    image: str
    network: str
    env: Mapping[str, str]
    secrets: tuple[str, ...]  # resolved values to scrub from messages
    labels: Mapping[str, str]
    exposed: tuple[Any, ...]
    bindings: Mapping[str, Any]
    restart_policy: Mapping[str, Any]

    def __repr__(self) -> str:  # never show the environment's values
        return f"Creation(image={self.image!r}, network={self.network!r}, env=[{', '.join(sorted(self.env))}])"


# The backend ---------------------------------------------------------------------------------------------


class DockerBackend:
    """Backend for provider `runtime`, type `container`, on one Docker engine. Thread-safe."""

    provider = Provider.RUNTIME
    types: tuple[str, ...] = (TYPE,)
    # Labels cannot change after creation: what the container is made of forces a re-creation (a config-only
    # change re-creates it too, as an update). The agent sleeps and wakes itself; Stopped means no container.
    traits: Mapping[str, TypeTraits] = {
        TYPE: TypeTraits(
            replace_on=frozenset({"image", "env", "runtime", "ports", "labels"}),
            self_managed=frozenset({"state"}),
            still_drift={"state": frozenset({NEVER_STARTED})},
            absent_when={"state": STOPPED},
        )
    }

    def __init__(self, ctx: BackendContext | RuntimeSettings | None = None, client: Any = None) -> None:
        """Built with a BackendContext (its settings: the runtime section); tests may pass the settings alone
        and a Docker client of their own."""
        settings = ctx.settings if isinstance(ctx, BackendContext) else ctx
        self.settings = settings if isinstance(settings, RuntimeSettings) else RuntimeSettings()
        self.instance = self.settings.instance
        self.url = self.settings.docker_url or os.environ.get("DOCKER_HOST", "") or f"unix://{DEFAULT_SOCKET}"
        self._owns_client = client is None
        self._client = client
        self._lock = threading.Lock()
        self._network_lock = threading.Lock()
        self._networks: set[str] = set()

    # Protocol ----------------------------------------------------------------------------------------------

    def observe(self, scope: Scope) -> dict[str, Observed]:
        """One label-filtered list of every container of ours, whatever the scope (it costs the same)."""
        doing = "list containers"
        found = self._call(doing, lambda api: api.containers(
            all=True, filters={"label": [f"{LABEL_MANAGED_BY}={self.instance}"]}
        ))
        out: dict[str, Observed] = {}
        for attrs in listing(found, doing, "container"):
            facts = Facts.of(attrs, doing)
            if facts.labels.get(LABEL_MANAGED_BY) != self.instance or not facts.name:
                continue
            key = make_key(self.provider, TYPE, facts.name)
            if scope.exact and not scope.wants(key):
                continue
            network = self.settings.network
            out[key] = Observed(key, facts.observed_spec(self.instance, network),
                                facts.recorded_hash(self.instance, network), {"container_id": facts.id})
        return dict(sorted(out.items()))

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        """Make `obj`'s container exist as specified. `before` is not trusted: the container is looked up
        again by name, so a retry after a crash adopts what the crashed run left behind."""
        self._check(obj)
        if action not in ("create", "update", "replace"):
            raise PermanentError(f"{obj.key}: unknown action {action!r}")
        state = str(obj.spec.get("state") or RUNNING)
        if state not in STATES:
            raise PermanentError(f"{obj.key}: state {state!r} is not one of {', '.join(STATES)}")
        current = self._owned(obj.name, refuse_foreign=True)
        if state == STOPPED:
            if current is None:
                return ApplyResult(Outcome.UNCHANGED)
            self._remove(current)
            return ApplyResult(Outcome.DELETED)
        if current is not None and current.recorded_hash(self.instance, self.settings.network, state) == obj.hash:
            moved = self._ensure_state(current.id, current.status, state, obj.name)
            return ApplyResult(Outcome.CONFIGURED if moved else Outcome.UNCHANGED, ids={"container_id": current.id})
        # Everything that can fail on the spec, the secrets or the image fails before the old container goes.
        creation = self._prepare(obj, resolve)
        self._ensure_image(creation.image, obj.name)
        self._ensure_network(creation.network)
        if current is not None:
            self._remove(current)
        container_id = self._create(obj.name, creation, state)
        outcome = Outcome.CREATED if current is None else Outcome.CONFIGURED
        return ApplyResult(outcome, ids={"container_id": container_id})

    def delete(self, obj: ManagedObject) -> Outcome:
        self._check(obj)
        current = self._owned(obj.name, refuse_foreign=False)
        if current is None:
            return Outcome.UNCHANGED
        self._remove(current)
        return Outcome.DELETED

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()

    # Docker calls ------------------------------------------------------------------------------------------

    def _api(self) -> Any:
        """The low-level API client (the engine is contacted lazily, so construction never fails)."""
        import docker.errors
        import requests
        with self._lock:
            if self._client is None:
                self._probe()
                try:
                    if self.settings.docker_url:
                        self._client = docker.DockerClient(base_url=self.settings.docker_url, timeout=CLIENT_TIMEOUT)
                    else:
                        self._client = docker.from_env(timeout=CLIENT_TIMEOUT)
                except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                    raise classify(exc, "connect", self.url) from None
            return getattr(self._client, "api", self._client)

    def _probe(self) -> None:
        """Connect to a local socket once before the SDK does: the SDK leaks its socket when the connect fails."""
        url = self.settings.docker_url or os.environ.get("DOCKER_HOST", "") or f"unix://{DEFAULT_SOCKET}"
        if not url.startswith(("unix://", "/")):
            return
        path = url.removeprefix("unix://")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(CLIENT_TIMEOUT)
                sock.connect(path)
        except OSError as exc:
            raise classify(exc, "connect", url) from None

    def _call(self, doing: str, fn: Callable[[Any], T], secrets: Iterable[str] = ()) -> T:
        import docker.errors
        import requests
        api = self._api()
        try:
            return fn(api)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError,
                json.JSONDecodeError) as exc:
            raise classify(exc, doing, self.url, secrets) from None

    def _owned(self, name: str, refuse_foreign: bool) -> Facts | None:
        """Our container named `name`, or None. A foreign one under that name: PermanentError, or None."""
        doing = f"look up container {name}"
        found = self._call(doing, lambda api: api.containers(
            all=True, filters={"name": f"^/{re.escape(name)}$"}
        ))
        for attrs in listing(found, doing, "container"):
            facts = Facts.of(attrs, doing)
            if facts.name != name:
                continue
            owner = facts.labels.get(LABEL_MANAGED_BY)
            if owner == self.instance:
                return facts
            if refuse_foreign:
                raise PermanentError(
                    f"container {name} exists but is not managed by this reconciler "
                    f"({LABEL_MANAGED_BY}={owner or '(unset)'}, expected {self.instance}); it is left alone: "
                    "remove or rename it, or set runtime.instance to its owner"
                )
            return None
        return None

    def _ensure_image(self, image: str, name: str) -> None:
        import docker.errors
        import requests
        if not image:
            raise PermanentError(f"container {name}: no image given")
        api = self._api()
        try:
            api.inspect_image(image)
        except docker.errors.NotFound:
            raise PermanentError(
                f"container {name}: image {image} is not on the Docker engine, and images are never pulled "
                f"(no registry is used): build or tag it locally, e.g. `docker build -t {image} <dir>` or "
                f"`docker tag <image> {image}`; `hiclaw-gitops demo` builds stand-in images for the default tags"
            ) from None
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise classify(exc, f"inspect image {image}", self.url) from None

    def _ensure_network(self, network: str) -> None:
        """Create the network when missing. Docker's duplicate-name check is not atomic (concurrent creates
        make several networks of one name), so creation is serialised here, and extra copies that we
        created and nothing uses are removed."""
        if network in SPECIAL_NETWORKS or network.startswith("container:"):
            return
        with self._network_lock:
            if network in self._networks:
                return
            found = self._named_networks(network)
            if not found:
                self._call(f"create network {network}", lambda api: api.create_network(
                    network, driver="bridge", labels={LABEL_MANAGED_BY: self.instance}, check_duplicate=True
                ))
                log.info("created network %s", network)
            elif len(found) > 1:
                self._remove_duplicate_networks(network, found)
            self._networks.add(network)

    def _named_networks(self, network: str) -> list[Mapping[str, Any]]:
        doing = f"list network {network}"
        found = listing(self._call(doing, lambda api: api.networks(names=[network])), doing, "network")
        named = [n for n in found if n.get("Name") == network]
        for n in named:
            if not isinstance(n.get("Id"), str):
                raise UnexpectedAnswer(f"{doing}: the Docker engine gave a network {network} whose `Id` is "
                                       f"{_shape(n.get('Id'))}, not a string")
        return sorted(named, key=lambda n: str(n.get("Created", "")))

    def _remove_duplicate_networks(self, network: str, found: list[Mapping[str, Any]]) -> None:
        import docker.errors
        import requests
        for extra in found[1:]:
            labels = extra.get("Labels")
            if not isinstance(labels, Mapping) or labels.get(LABEL_MANAGED_BY) != self.instance:
                continue
            try:
                self._api().remove_network(extra["Id"])
                log.info("removed a duplicate of network %s", network)
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
                continue  # in use: Docker refuses, and the copy stays

    def _prepare(self, obj: ManagedObject, resolve: Resolve) -> Creation:
        spec = obj.spec
        resolved = resolve(spec)
        env = {str(k): str(v) for k, v in (resolved.get("env") or {}).items()}
        plain = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        labels = container_labels(spec, self.instance)
        labels[LABEL_SPEC_HASH] = obj.hash
        if obj.consumed:
            labels[LABEL_CONSUMED] = obj.consumed
        labels[LABEL_APPLIED] = canonical_json(dict(spec))
        exposed, bindings = _ports(spec.get("ports") or ())
        return Creation(
            image=str(spec.get("image") or ""),
            network=self.settings.network,
            env=env,
            secrets=tuple(v for k, v in env.items() if plain.get(k) != v),
            labels=labels,
            exposed=tuple(exposed),
            bindings=bindings,
            restart_policy=_restart_policy(self.settings.restart_policy),
        )

    def _create(self, name: str, c: Creation, state: str) -> str:
        """Create the container and bring it to its state; a container that fails to start is removed again,
        so the failure is observed next time rather than mistaken for a sleeping agent."""

        def create(api: Any) -> str:
            host_config = api.create_host_config(
                restart_policy=c.restart_policy,
                network_mode=c.network or None,
                port_bindings=c.bindings or None,
                extra_hosts={"host.docker.internal": "host-gateway"} if c.network not in ("host", "none") else None,
            )
            result = api.create_container(
                c.image,
                name=name,
                environment=c.env,
                labels=c.labels,
                ports=list(c.exposed) or None,
                host_config=host_config,
                working_dir=c.env.get("HOME") or None,
                detach=True,
            )
            if not isinstance(result, Mapping) or not isinstance(result.get("Id"), str) or not result["Id"]:
                got = _shape(result.get("Id")) if isinstance(result, Mapping) else _shape(result)
                raise UnexpectedAnswer(f"create container {name}: the Docker engine's answer has no container Id "
                                       f"(got {got}); the container may exist: the next pass adopts it")
            return str(result["Id"])

        container_id = self._call(f"create container {name}", create, c.secrets)
        log.info("created container %s (%s)", name, c.image)
        try:
            self._ensure_state(container_id, "created", state, name)
        except (TransientError, PermanentError):
            try:
                self._call(f"remove container {name}", lambda api: api.remove_container(container_id, force=True))
            except (TransientError, PermanentError):
                log.warning("container %s failed to start and could not be removed", name)
            raise
        return container_id

    def _ensure_state(self, container_id: str, status: str, state: str, name: str) -> bool:
        """Start, unpause or stop the container so it shows `state`; whether anything was done."""
        if state == RUNNING:
            if status in ("running", "restarting"):
                return False
            if status == "paused":
                self._call(f"unpause container {name}", lambda api: api.unpause(container_id))
            else:
                self._call(f"start container {name}", lambda api: api.start(container_id))
            log.info("started container %s", name)
            return True
        if status in ("running", "restarting", "paused"):
            self._call(f"stop container {name}", lambda api: api.stop(container_id, timeout=STOP_TIMEOUT))
            log.info("stopped container %s", name)
            return True
        return False

    def _remove(self, facts: Facts) -> None:
        import docker.errors
        import requests
        try:
            self._api().remove_container(facts.id, force=True)
        except docker.errors.NotFound:
            return
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise classify(exc, f"remove container {facts.name}", self.url) from None
        log.info("removed container %s", facts.name)

    def _check(self, obj: ManagedObject) -> None:
        if obj.provider is not self.provider or obj.type != TYPE:
            raise PermanentError(f"{obj.key} is not a container: the Docker backend serves runtime/container only")
