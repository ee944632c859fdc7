"""Builders for apply tests: hand-made managed objects, memory backends, and plan-then-apply in one call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from backends.memory import MemoryBackend
from gitops.apply.executor import ApplyOptions, execute
from gitops.apply.observe import LiveState, observe_live
from gitops.apply.result import RunResult
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import DesiredState, ManagedObject, Provider
from gitops.pipeline import settle_inventory, with_credentials
from gitops.plan.guard import prune_guard
from gitops.plan.model import Plan, make_plan
from gitops.providers.protocol import Backend
from gitops.providers.wiring import Traits
from gitops.settings.model import PruneSettings

FAST = ApplyOptions(backoff=0.001, backoff_max=0.005, timeout=10.0)


def obj(
    key: str,
    spec: Mapping[str, Any] | None = None,
    deps: Iterable[str] = (),
    owner: str = "Worker/alice",
    prune: bool = True,
) -> ManagedObject:
    provider, type_, name = key.split("/", 2)
    return ManagedObject(Provider(provider), type_, name, dict(spec or {"v": 1}), owner, tuple(deps), prune)


def table(*objects: ManagedObject) -> dict[str, ManagedObject]:
    return {o.key: o for o in objects}


def backends(**by_provider: MemoryBackend) -> dict[Provider, Backend]:
    return {Provider(name): b for name, b in by_provider.items()}


def credentialed(desired: Mapping[str, ManagedObject], secrets: SecretStore | None) -> dict[str, ManagedObject]:
    """`desired` as the pipeline plans it: each consumer carrying the digest of the secret values it uses now."""
    return dict(with_credentials(DesiredState(desired, frozenset()), secrets).desired.objects)


def plan_live(
    desired: Mapping[str, ManagedObject],
    live_backends: Mapping[Provider, Backend],
    store: StateStore,
    prune: PruneSettings | None = None,
    head: str = "c1",
    secrets: SecretStore | None = None,
) -> tuple[Plan, LiveState]:
    """What the reconcile pass does between compile and apply, for hand-built desired objects."""
    desired = credentialed(desired, secrets)
    live = observe_live(live_backends, store, desired=desired)
    providers = frozenset(live_backends)
    guard = prune_guard(DesiredState(desired, providers), live.baseline, prune or PruneSettings())
    traits = Traits.of_backends(live_backends)
    plan = make_plan(desired=desired, current=live.baseline.objects, head=head, base=live.baseline.label,
                     compared_against="live", providers=providers, disabled_notes={}, old_org={}, new_org={},
                     guard=guard, replace_on=lambda o: traits.of(o).replace_on,
                     prune=(prune or PruneSettings()).enabled)
    return plan, live


def converge(
    desired: Mapping[str, ManagedObject],
    live_backends: Mapping[Provider, Backend],
    store: StateStore,
    secrets: SecretStore | None = None,
    options: ApplyOptions = FAST,
    head: str = "c1",
) -> tuple[Plan, RunResult]:
    plan, live = plan_live(desired, live_backends, store, head=head, secrets=secrets)
    desired = credentialed(desired, secrets)
    result = execute(plan, desired, live_backends, store, secrets, options,
                     observed=live.observed, current=live.baseline.objects)
    settle_inventory(store, live, plan, desired, head, result)
    return plan, result
