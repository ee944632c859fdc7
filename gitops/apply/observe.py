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
from gitops.providers.protocol import ENFORCE_FIELD, Backend, Observed, Scope, TypeTraits
from gitops.providers.wiring import Traits


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


def state_enforced(obj: ManagedObject) -> bool:
    return bool(obj.spec.get(ENFORCE_FIELD))


def ignored_fields(obj: ManagedObject, traits: TypeTraits) -> frozenset[str]:
    """Fields an observation of `obj` is not compared on: write-only ones, and the agent's own state unless
    enforced."""
    return traits.write_only if state_enforced(obj) else traits.write_only | traits.self_managed


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


def scopes(backends: Iterable[Provider], keys: Iterable[str], *, exact: bool = False) -> dict[Provider, Scope]:
    """Per provider, the scope of an observation of `keys` (desired ∪ inventory, or the keys just touched)."""
    wanted = list(keys)
    return {p: Scope.of(wanted, p, exact=exact) for p in backends}


def observe_all(
    backends: Mapping[Provider, Backend], scope: Mapping[Provider, Scope]
) -> dict[Provider, dict[str, Observed]]:
    """One observation per backend, concurrently; ObserveError naming the first provider that failed."""
    if not backends:
        return {}
    out: dict[Provider, dict[str, Observed]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="observe") as pool:
        futures = {p: pool.submit(b.observe, scope.get(p) or Scope({})) for p, b in backends.items()}
        for provider, future in futures.items():
            try:
                out[provider] = future.result()
            except Exception as exc:
                raise ObserveError(provider.value, f"{type(exc).__name__}: {exc}") from exc
    return out


def baseline_object(inventory: ManagedObject, seen: Observed, traits: TypeTraits) -> ManagedObject:
    """The object as it exists, in the inventory's terms (owner, dependencies, prune, outputs)."""
    enforced = state_enforced(inventory)
    if seen.recorded_hash is not None:
        clean = seen.recorded_hash == inventory.hash
    else:
        clean = spec_matches(inventory.spec, seen.spec, ignored_fields(inventory, traits))
    if clean:
        spec = dict(inventory.spec)
    else:  # what can be seen, plus what can never be seen (write-only fields) as we last wrote it
        spec = {**seen.spec, **{k: v for k, v in inventory.spec.items() if k in traits.write_only}}
    for name in traits.self_managed:
        if name not in inventory.spec:
            continue
        if enforced:
            if name in seen.spec:
                spec[name] = seen.spec[name]
        elif seen.spec.get(name) in traits.still_drift.get(name, ()):
            spec[name] = seen.spec[name]  # not the agent's own doing (never started): it shows
        else:
            spec[name] = inventory.spec[name]  # the agent's own sleep and wake are not fought
    found = inventory if spec == dict(inventory.spec) else inventory.with_spec(spec)
    # Unclean: what it carries is unknown, so it is not credited with the credentials we last gave it.
    return found if clean else found.with_consumed("")


def adopted_object(seen: Observed, declared: ManagedObject | None, started_by_us: bool,
                   traits: TypeTraits) -> ManagedObject:
    """An object with our label that the inventory does not list. Declared: in the desired object's terms
    (a create that half-happened, now planned as update or no-op). Undeclared: prunable only when our
    journal shows we started creating it; otherwise kept, since prune trusts only what we know we made."""
    provider, type_, name = seen.key.split("/", 2)
    if declared is not None:
        return baseline_object(declared, seen, traits)
    return ManagedObject(Provider(provider), type_, name, dict(seen.spec), "unknown", (), started_by_us)


def live_from(
    observations: Mapping[Provider, Mapping[str, Observed]],
    store: StateStore,
    desired: Mapping[str, ManagedObject] | None = None,
    traits: Traits | None = None,
) -> LiveState:
    """Build the live baseline from observations already made (no I/O besides reading the state store)."""
    traits = traits or Traits()
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
            objects[key] = baseline_object(known, seen, traits.of(known))
        else:
            adopted.add(key)
    for key, known in inventory.items():
        if key not in observed and known.provider in observations and traits.of(known).absent_by_design(known.spec):
            objects[key] = known  # e.g. Stopped: no container is what was applied
    if adopted:
        started = _started_by_us(store, adopted - set(desired))
        for key in adopted:
            provider, type_, _ = key.split("/", 2)
            objects[key] = adopted_object(observed[key], desired.get(key), key in started, traits.get(provider, type_))
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
    traits: Traits | None = None,
) -> LiveState:
    """Observe the backends of `desired_providers` (default: all given) once, each scoped to the keys the
    engine cares about (desired ∪ inventory), and build the live baseline."""
    wanted = set(backends) if desired_providers is None else set(desired_providers) & set(backends)
    chosen = {p: b for p, b in backends.items() if p in wanted}
    keys = set(desired or {}) | set(store.inventory_keys())
    traits = traits or Traits.of_backends(chosen)
    return live_from(observe_all(chosen, scopes(chosen, keys)), store, desired, traits)
