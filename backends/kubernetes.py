"""The Kubernetes runtime backend: per agent a Deployment, ServiceAccount, Secret and Service, applied server-side.

Provider `runtime`, object type `container` (the same compiled objects as the Docker backend), key
`runtime/container/<name>`. The objects per agent and their annotations are described in
`backends.kubernetes_objects`; the calls and the error classification in `backends.kubernetes_api`;
docs/kubernetes.md is the operator's view.

Observation is four label-selector lists per pass (`hiclaw.io/managed-by=<instance>`, without the secret
store's and the state snapshots' Secrets: Deployments, ServiceAccounts, Secrets, Services), never one call per
agent. The Deployment is the agent: its annotations
record the hash and the applied spec; the recorded hash is trusted only while the cluster agrees (image, labels,
and the companions the spec needs exist), else it is None and the plan applies again.

Traits differ from Docker's: everything of a Deployment can change in place, so image, env, ports, labels and
config are updates (server-side apply; the pod template changes and Kubernetes recreates the pod — strategy
Recreate, one agent never runs twice). Only a `runtime` switch is a replace: the old runtime's Deployment is
deleted before the new one is made, keeping the ServiceAccount, Secret and Service (and everything the agent
has elsewhere: Matrix account, storage, consumer). `state` is the agent's own (the Manager scales idle workers
to zero) unless `enforce_state`; `Stopped` means no objects at all.

Writes are server-side apply with field manager `hiclaw-gitops`, forced, and only ever to objects carrying our
managed-by label (looked up first): a Deployment, Secret, ServiceAccount or Service under our name that
someone else owns is refused, never adopted. Resolved credential values reach only the Secret's data; they are
scrubbed from every message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from backends.kubernetes_api import KubeApi
from backends.kubernetes_objects import (
    ANN_POD,
    KINDS,
    LABEL_MANAGED_BY,
    LABEL_SECRET_STORE,
    LABEL_STATE_SNAPSHOT,
    POD_DRIFT,
    RUNNING,
    STATES,
    STOPPED,
    Workload,
    manifests,
    pod_digest,
    pod_settings,
)
from gitops.objects import ManagedObject, Provider, make_key
from gitops.providers.protocol import (
    ApplyResult,
    BackendContext,
    Observed,
    Outcome,
    PermanentError,
    Resolve,
    Scope,
    TypeTraits,
)
from gitops.settings.model import RuntimeSettings

log = logging.getLogger(__name__)

TYPE = "container"


class KubernetesBackend:
    """Backend for provider `runtime`, type `container`, on one namespace of one cluster. Thread-safe."""

    provider = Provider.RUNTIME
    types: tuple[str, ...] = (TYPE,)
    traits: Mapping[str, TypeTraits] = {
        TYPE: TypeTraits(
            replace_on=frozenset({"runtime"}),
            self_managed=frozenset({"state"}),
            absent_when={"state": STOPPED},
        )
    }

    def __init__(self, ctx: BackendContext | RuntimeSettings | None = None, api_client: Any = None) -> None:
        """Built with a BackendContext (settings: the runtime section); tests may pass an `ApiClient`."""
        settings = ctx.settings if isinstance(ctx, BackendContext) else ctx
        self.settings = settings if isinstance(settings, RuntimeSettings) else RuntimeSettings()
        self.instance = self.settings.instance
        s = self.settings
        self.pod = pod_settings(s.resources, s.node_selector, s.tolerations, s.image_pull_secrets)
        self.pod_digest = pod_digest(self.pod)
        self.namespace = self.settings.namespace
        self.api = KubeApi(api_client)

    @property
    def selector(self) -> str:
        """Ours, without the reconciler's own bookkeeping Secrets (the secret store's credentials and the state
        snapshots also carry managed-by): observation never downloads them."""
        return f"{LABEL_MANAGED_BY}={self.instance},!{LABEL_SECRET_STORE},!{LABEL_STATE_SNAPSHOT}"

    # Protocol ----------------------------------------------------------------------------------------------

    def observe(self, scope: Scope) -> dict[str, Observed]:
        """One label-selector list per Kubernetes kind; an exact scope asking for nothing costs nothing."""
        if scope.exact and not any(scope.names.values()):
            return {}
        listed = {kind: self.api.list(kind, self.namespace, self.selector) for kind in KINDS}
        companions: dict[str, set[str]] = {}
        for kind in KINDS[1:]:
            for item in listed[kind]:
                if _owner(item) == self.instance:
                    companions.setdefault(str(item["metadata"].get("name") or ""), set()).add(kind)
        out: dict[str, Observed] = {}
        for item in listed["Deployment"]:
            if _owner(item) != self.instance:
                continue
            workload = Workload.of(item, companions.get(str(item["metadata"].get("name") or ""), ()))
            if not workload.name:
                continue
            key = make_key(self.provider, TYPE, workload.name)
            if scope.exact and not scope.wants(key):
                continue
            spec, recorded = workload.observed_spec(self.instance), workload.recorded_hash(self.instance)
            applied_pod = str(workload.annotations.get(ANN_POD) or "")
            if applied_pod != self.pod_digest:  # the pod settings changed since: drift, shown as such
                spec, recorded = {**spec, POD_DRIFT: applied_pod or "(none)"}, None
            out[key] = Observed(key, spec, recorded, {"uid": workload.uid})
        return dict(sorted(out.items()))

    def apply(self, obj: ManagedObject, action: str, before: Observed | None, resolve: Resolve) -> ApplyResult:
        """Make the agent's objects exist as specified; `before` is not trusted (looked up again by name)."""
        self._check(obj)
        if action not in ("create", "update", "replace"):
            raise PermanentError(f"{obj.key}: unknown action {action!r}")
        state = str(obj.spec.get("state") or RUNNING)
        if state not in STATES:
            raise PermanentError(f"{obj.key}: state {state!r} is not one of {', '.join(STATES)}")
        current = self._ours(obj.name)
        if state == STOPPED:
            return ApplyResult(Outcome.DELETED if self._remove(obj.name, current) else Outcome.UNCHANGED)
        deployment = current.get("Deployment")
        if deployment is not None:
            workload = Workload.of(deployment, current)
            if (workload.recorded_hash(self.instance, state) == obj.hash and workload.state == state
                    and str(workload.annotations.get(ANN_POD) or "") == self.pod_digest):
                return ApplyResult(Outcome.UNCHANGED, ids={"uid": workload.uid})
        made = manifests(obj.name, self.namespace, self.instance, obj.spec, obj.hash, obj.consumed,
                         resolve(obj.spec), self.pod)
        if deployment is not None and action == "replace":
            self.api.delete("Deployment", self.namespace, obj.name)
            log.info("deleted Deployment %s/%s to replace it", self.namespace, obj.name)
            deployment = None
        self.api.apply(made.service_account, self.namespace)
        if made.secret is not None:
            self.api.apply(made.secret, self.namespace, made.secrets)
        elif "Secret" in current:
            self.api.delete("Secret", self.namespace, obj.name)
        if made.service is not None:
            self.api.apply(made.service, self.namespace)
        elif "Service" in current:
            self.api.delete("Service", self.namespace, obj.name)
        result = self.api.apply(made.deployment, self.namespace)
        uid = str((result.get("metadata") or {}).get("uid") or "")
        log.info("applied agent %s/%s (%s, %s)", self.namespace, obj.name, made.deployment["spec"]["template"]
                 ["spec"]["containers"][0]["image"], state)
        return ApplyResult(Outcome.CREATED if deployment is None and "Deployment" not in current
                           else Outcome.CONFIGURED, ids={"uid": uid})

    def delete(self, obj: ManagedObject) -> Outcome:
        self._check(obj)
        current = self._ours(obj.name, refuse_foreign=False)
        return Outcome.DELETED if self._remove(obj.name, current) else Outcome.UNCHANGED

    def close(self) -> None:
        self.api.close()

    # Helpers -----------------------------------------------------------------------------------------------

    def _ours(self, name: str, refuse_foreign: bool = True) -> dict[str, dict[str, Any]]:
        """Our objects named `name`, by kind. One under that name owned by someone else: PermanentError (or,
        for a delete, left out and left alone)."""
        found: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            item = self.api.get(kind, self.namespace, name)
            if item is None:
                continue
            owner = _owner(item)
            if owner == self.instance:
                found[kind] = item
            elif refuse_foreign:
                raise PermanentError(
                    f"{kind} {self.namespace}/{name} exists but is not managed by this reconciler "
                    f"({LABEL_MANAGED_BY}={owner or '(unset)'}, expected {self.instance}); it is left alone: "
                    "remove or rename it, or set runtime.instance to its owner"
                )
        return found

    def _remove(self, name: str, current: Mapping[str, Any]) -> bool:
        """Delete our objects of the agent, the Deployment first; whether anything was there."""
        removed = False
        for kind in KINDS:
            if kind in current:
                removed = self.api.delete(kind, self.namespace, name) or removed
        if removed:
            log.info("removed agent %s/%s", self.namespace, name)
        return removed

    def _check(self, obj: ManagedObject) -> None:
        if obj.provider is not self.provider or obj.type != TYPE:
            raise PermanentError(f"{obj.key} is not a container: the Kubernetes backend serves runtime/container only")


def _owner(item: Mapping[str, Any]) -> str:
    labels = (item.get("metadata") or {}).get("labels")
    return str(labels.get(LABEL_MANAGED_BY) or "") if isinstance(labels, Mapping) else ""
