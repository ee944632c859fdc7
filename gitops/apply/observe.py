"""Live baseline: observe every configured backend once and express what exists as managed objects.

The baseline holds only our objects: those in the inventory that are observed, plus objects observed with our
ownership label but missing from the inventory — a run killed between a create and its inventory record must
be adopted, not duplicated. Everything else a system holds is invisible here, so nothing else can be planned
for deletion. Inventory objects of a provider that is not observed (disabled) are left out entirely.

An observed object becomes the inventory's own object when the hash it carries (or, for stores that keep no
hash, its spec) matches what was applied — a clean diff — and otherwise an object built from the observed
spec, so drift shows in the plan. Agents may sleep and wake: a container's `state` is taken from the
inventory unless its spec says `enforce_state`, in which case the observed state shows (and the plan
restores the declared one).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops.apply.state import StateStore
from gitops.objects import SECRET_PREFIX, ManagedObject, Provider
from gitops.plan import baseline as baselines
from gitops.plan.baseline import LAST_COMMIT, Baseline
from gitops.providers.protocol import Backend, Observed

# Container fields the agent itself may change (sleep / wake) without it being drift, unless enforced.
STATE_FIELD = "state"
NEVER_STARTED = "Created"  # a backend's observed state for a container created but never started
ENFORCE_FIELD = "enforce_state"


class ObserveError(Exception):
    """A backend could not list what exists; no plan can be made against live state."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"cannot observe {provider}: {message}")
        self.provider = provider


@dataclass(frozen=True, slots=True)
class LiveState:
    """The live baseline plus what the executor and the reconcile pass need from the same observation."""

    baseline: Baseline
    observed: Mapping[str, Observed]  # every observed object by key (ours by label)
    adopted: frozenset[str]  # observed with our label but not in the inventory
    providers: frozenset[Provider]  # the providers observed


def is_container(obj: ManagedObject) -> bool:
    return obj.provider is Provider.RUNTIME and obj.type == "container"


def absent_by_design(obj: ManagedObject) -> bool:
    """A container declared `Stopped` is one that does not exist: its absence is the applied state."""
    return is_container(obj) and obj.spec.get(STATE_FIELD) == "Stopped"


def state_enforced(obj: ManagedObject) -> bool:
    return bool(obj.spec.get(ENFORCE_FIELD))


def spec_matches(desired: Mapping[str, Any], observed: Mapping[str, Any], ignore: Iterable[str] = ()) -> bool:
    """Whether an observed spec shows `desired`, for stores that keep no hash: equal, except that a value
    holding a secret reference cannot be seen (it may be absent or anything), and top-level `ignore`d keys."""
    skip = set(ignore)
    return _matches({k: v for k, v in desired.items() if k not in skip},
                    {k: v for k, v in observed.items() if k not in skip})


def _matches(desired: Any, observed: Any) -> bool:
    if _has_secret(desired):
        if isinstance(desired, Mapping) and isinstance(observed, Mapping):
            return all(k not in observed or _matches(v, observed[k]) for k, v in desired.items()) and set(
                observed) <= set(desired)
        return True
    return bool(desired == observed)


def _has_secret(value: Any) -> bool:
    if isinstance(value, str):
        return SECRET_PREFIX in value
    if isinstance(value, Mapping):
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_secret(v) for v in value)
    return False


def observe_all(backends: Mapping[Provider, Backend]) -> dict[Provider, dict[str, Observed]]:
    """One observation per backend, concurrently; ObserveError naming the first provider that failed."""
    if not backends:
        return {}
    out: dict[Provider, dict[str, Observed]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="observe") as pool:
        futures = {provider: pool.submit(backend.observe) for provider, backend in backends.items()}
        for provider, future in futures.items():
            try:
                out[provider] = future.result()
            except Exception as exc:
                raise ObserveError(provider.value, f"{type(exc).__name__}: {exc}") from exc
    return out


def baseline_object(inventory: ManagedObject, seen: Observed) -> ManagedObject:
    """The object as it exists, in the inventory's terms (owner, dependencies, prune)."""
    container = is_container(inventory)
    ignore = (STATE_FIELD,) if container and not state_enforced(inventory) else ()
    if seen.recorded_hash is not None:
        clean = seen.recorded_hash == inventory.hash
    else:
        clean = spec_matches(inventory.spec, seen.spec, ignore)
    spec = dict(inventory.spec) if clean else dict(seen.spec)
    if container and STATE_FIELD in inventory.spec:
        if state_enforced(inventory) and STATE_FIELD in seen.spec:
            spec[STATE_FIELD] = seen.spec[STATE_FIELD]
        elif not state_enforced(inventory):
            # The agent's own sleep and wake are not fought; a container that was never started (an apply
            # cut short between create and start) is not the agent's doing, so it shows and gets started.
            never_started = seen.spec.get(STATE_FIELD) == NEVER_STARTED
            spec[STATE_FIELD] = NEVER_STARTED if never_started else inventory.spec[STATE_FIELD]
    return inventory if spec == dict(inventory.spec) else inventory.with_spec(spec)


def adopted_object(seen: Observed, declared: ManagedObject | None, started_by_us: bool) -> ManagedObject:
    """An object with our label that the inventory does not list. Declared: in the desired object's terms
    (a create that half-happened, now planned as update or no-op). Undeclared: prunable only when our
    journal shows we started creating it; otherwise kept, since prune trusts only what we know we made."""
    provider, type_, name = seen.key.split("/", 2)
    if declared is not None:
        return baseline_object(declared, seen)
    return ManagedObject(Provider(provider), type_, name, dict(seen.spec), "unknown", (), started_by_us)


def live_from(
    observations: Mapping[Provider, Mapping[str, Observed]],
    store: StateStore,
    desired: Mapping[str, ManagedObject] | None = None,
) -> LiveState:
    """Build the live baseline from observations already made (no I/O besides reading the state store)."""
    recorded = baselines.from_state(store)  # the inventory, and the org and access of the last applied commit
    inventory = recorded.objects
    desired = desired or {}
    observed: dict[str, Observed] = {}
    for found in observations.values():
        observed.update(found)
    objects: dict[str, ManagedObject] = {}
    adopted: set[str] = set()
    for key, seen in observed.items():
        known = inventory.get(key)
        if known is not None:
            objects[key] = baseline_object(known, seen)
        else:
            adopted.add(key)
    for key, known in inventory.items():
        if key not in observed and absent_by_design(known):
            objects[key] = known  # Stopped: no container is what was applied
    if adopted:
        started = _started_by_us(store, adopted - set(desired))
        for key in adopted:
            objects[key] = adopted_object(observed[key], desired.get(key), key in started)
    baseline = Baseline("live", store.get_meta(LAST_COMMIT, "") or "live", dict(sorted(objects.items())),
                        recorded.org, recorded.access)
    return LiveState(baseline, observed, frozenset(adopted), frozenset(observations))


def _started_by_us(store: StateStore, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    return {e.key for e in store.journal_entries() if e.key in keys and e.action in ("create", "replace")}


def observe_live(
    backends: Mapping[Provider, Backend],
    store: StateStore,
    desired_providers: Iterable[Provider] | None = None,
    desired: Mapping[str, ManagedObject] | None = None,
) -> LiveState:
    """Observe the backends of `desired_providers` (default: all given) once and build the live baseline."""
    wanted = set(backends) if desired_providers is None else set(desired_providers) & set(backends)
    return live_from(observe_all({p: b for p, b in backends.items() if p in wanted}), store, desired)


def live(
    backends: Mapping[Provider, Backend],
    store: StateStore,
    desired_providers: Iterable[Provider] | None = None,
    desired: Mapping[str, ManagedObject] | None = None,
) -> Baseline:
    """The live baseline (kind "live"); see `observe_live` for the observations that go with it."""
    return observe_live(backends, store, desired_providers, desired).baseline
