"""One reconcile pass: read → validate → compile → observe → plan → apply → verify → snapshots.

The daemon (`run`), `apply` and `drift --heal` all call `reconcile`; `apply PLANFILE` calls `apply_saved`,
which applies exactly a reviewed plan after checking it is still fresh. Backends are built from the
settings through `backends.registry` (`build_backends`), never imported by name.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from backends import registry
from backends.base import Backend, Resolve
from gitops import baseline as baselines
from gitops import engine
from gitops.apply import ApplyOptions, RunResult, StalePlan, check_fresh, describe, execute
from gitops.diagnostics import Diagnostic, has_errors
from gitops.files import FileSource
from gitops.load import ParseCache
from gitops.objects import DesiredState, ManagedObject, Provider, canonical_json
from gitops.observe import LiveState, ObserveError, observe_live
from gitops.plan import Action, Plan, fingerprint, redact
from gitops.secrets import SecretStore
from gitops.settings import Settings
from gitops.state import StateStore, org_snapshot


class BackendsUnavailable(Exception):
    """A configured provider has no usable backend (module missing, or it failed to start)."""


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one pass did: the diagnostics, the plan (unless invalid), and the run (unless dry or refused early)."""

    head: str
    diagnostics: tuple[Diagnostic, ...] = ()
    plan: Plan | None = None
    run: RunResult | None = None
    error: str = ""
    dry_run: bool = False

    @property
    def valid(self) -> bool:
        return not has_errors(self.diagnostics)

    @property
    def phase(self) -> str:
        """invalid | error | planned | refused | applied | failed."""
        if not self.valid:
            return "invalid"
        if self.error:
            return "error"
        if self.run is None:
            return "planned"
        if self.run.refused:
            return "refused"
        return "applied" if self.run.ok else "failed"

    @property
    def ok(self) -> bool:
        return self.phase in ("planned", "applied")

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "phase": self.phase,
            "ok": self.ok,
            "error": self.error,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "plan": self.plan.to_dict() if self.plan else None,
            "run": self.run.to_dict() if self.run else None,
        }


# Backends from settings -----------------------------------------------------------------------------


def backend_names(settings: Settings) -> dict[Provider, str]:
    """Provider → backend name: `runtime.backend` for the runtime; each other section its own name."""
    names: dict[Provider, str] = {}
    if settings.runtime is not None:
        names[Provider.RUNTIME] = settings.runtime.backend
    for provider, section in ((Provider.MATRIX, settings.matrix), (Provider.STORAGE, settings.storage),
                              (Provider.GATEWAY, settings.gateway)):
        if section is not None:
            names[provider] = provider.value
    return names


def build_backends(settings: Settings, secrets: SecretStore | None) -> dict[Provider, Backend]:
    """One backend per configured provider, built as `Class(settings=<the provider's settings section>,
    secrets=<the secret store>)` (a backend that needs no secrets accepts and ignores the keyword)."""
    sections: dict[Provider, Any] = {Provider.RUNTIME: settings.runtime, Provider.MATRIX: settings.matrix,
                                     Provider.STORAGE: settings.storage, Provider.GATEWAY: settings.gateway}
    built: dict[Provider, Backend] = {}
    try:
        for provider, name in backend_names(settings).items():
            try:
                cls = registry.get_class(name)
            except registry.BackendUnavailable as exc:
                raise BackendsUnavailable(
                    f"provider {provider.value} is configured but its backend is not available ({exc.reason})"
                ) from None
            try:
                backend = cls(settings=sections[provider], secrets=secrets)  # type: ignore[call-arg]
            except Exception as exc:
                raise BackendsUnavailable(f"provider {provider.value}: backend {name!r} failed to start: "
                                          f"{describe(exc)}") from None
            if Provider(backend.provider) is not provider:
                backend.close()
                raise BackendsUnavailable(f"backend {name!r} serves {backend.provider}, not {provider.value}")
            built[provider] = backend
    except BaseException:
        close_backends(built)
        raise
    return built


def close_backends(backends: Mapping[Provider, Backend]) -> None:
    for backend in backends.values():
        with contextlib.suppress(Exception):  # closing is best effort; the pass result is already decided
            backend.close()


# The pass -------------------------------------------------------------------------------------------


def reconcile(
    source: FileSource,
    settings: Settings,
    *,
    head: str = "",
    store: StateStore,
    secrets: SecretStore | None,
    backends: Mapping[Provider, Backend],
    allow_mass_delete: bool = False,
    dry_run: bool = False,
    cache: ParseCache | None = None,
    strict: bool = False,
    options: ApplyOptions | None = None,
    stop: threading.Event | None = None,
) -> ReconcileResult:
    """Bring live state to the org at `head` (a commit id; empty: the content digest of a directory).

    Invalid input returns its diagnostics and touches nothing. With `dry_run`, stops after the plan. Without
    backends (no provider configured) the baseline is the state store and only the snapshots move.
    """
    read = engine.read_org(source, cache, strict=strict, head=head)
    diagnostics = tuple(read.validation.diagnostics)
    if not read.ok:
        return ReconcileResult(read.head, diagnostics)
    desired = engine.desired_state(read, settings)
    try:
        live = observe_live(backends, store, settings.providers, desired.objects) if backends else None
    except ObserveError as exc:
        return ReconcileResult(read.head, diagnostics, error=describe(exc))
    current = live.baseline if live else state_baseline(store, settings)
    plan = engine.plan(read, settings, current, desired=desired)
    if dry_run:
        return ReconcileResult(read.head, diagnostics, plan, dry_run=True)
    opts = _options(settings, options, allow_mass_delete, stop)
    run = execute(plan, desired.objects, backends, store, _resolver(secrets), opts,
                  observed=live.observed if live else None, current=current.objects)
    settle_inventory(store, live, plan, desired.objects, read.head, run)
    if run.ok:
        record_snapshots(store, read, desired)
    return ReconcileResult(read.head, diagnostics, plan, run)


def apply_saved(
    plan: Plan,
    source: FileSource,
    settings: Settings,
    *,
    head: str = "",
    store: StateStore,
    secrets: SecretStore | None,
    backends: Mapping[Provider, Backend],
    allow_mass_delete: bool = False,
    cache: ParseCache | None = None,
    strict: bool = False,
    options: ApplyOptions | None = None,
    stop: threading.Event | None = None,
) -> ReconcileResult:
    """Apply exactly `plan` (made earlier by `plan --out`), refusing it as stale if the head or the observed
    state moved, or if the org at head no longer compiles to the plan's changes."""
    read = engine.read_org(source, cache, strict=strict, head=head)
    diagnostics = tuple(read.validation.diagnostics)
    if not read.ok:
        return ReconcileResult(read.head, diagnostics, plan)
    if plan.compared_against not in ("live", "state"):
        return ReconcileResult(read.head, diagnostics, plan, error=(
            f"the saved plan compares against a {plan.compared_against} (an offline review); "
            "only plans made against live or state can be applied"))
    desired = engine.desired_state(read, settings)
    live: LiveState | None = None
    try:
        if plan.compared_against == "live":
            if not backends:
                raise StalePlan("the saved plan was made against live state, but no provider is configured now")
            live = observe_live(backends, store, settings.providers, desired.objects)
            current = live.baseline
        else:
            current = state_baseline(store, settings)
        check_fresh(plan, read.head, fingerprint(current.objects))
        check_matches(plan, desired)
    except ObserveError as exc:
        return ReconcileResult(read.head, diagnostics, plan, error=describe(exc))
    except StalePlan as exc:
        return ReconcileResult(read.head, diagnostics, plan, error=str(exc))
    opts = _options(settings, options, allow_mass_delete, stop)
    run = execute(plan, desired.objects, backends, store, _resolver(secrets), opts,
                  observed=live.observed if live else None, current=current.objects)
    settle_inventory(store, live, plan, desired.objects, read.head, run)
    if run.ok:
        record_snapshots(store, read, desired)
    return ReconcileResult(read.head, diagnostics, plan, run)


def check_matches(plan: Plan, desired: DesiredState) -> None:
    """Every create/update/replace of the plan must be what the org at head compiles to (StalePlan if not)."""
    for change in plan.changes:
        if change.action in (Action.CREATE, Action.UPDATE, Action.REPLACE):
            obj = desired.objects.get(change.key)
            if obj is None or canonical_json(redact(obj.spec)) != canonical_json(change.after):
                raise StalePlan(f"the saved plan is stale: {change.key} no longer compiles to the planned spec; "
                                "run `plan` again")
        elif change.action is Action.DELETE and change.key in desired.objects:
            raise StalePlan(f"the saved plan is stale: it deletes {change.key}, which is declared; run `plan` again")


def state_baseline(store: StateStore, settings: Settings) -> baselines.Baseline:
    """The state store's baseline, limited to enabled providers: a disabled provider's objects are left alone."""
    base = baselines.from_state(store)
    enabled = settings.providers
    return replace(base, objects={k: o for k, o in base.objects.items() if o.provider in enabled})


def record_snapshots(store: StateStore, read: engine.OrgRead, desired: DesiredState) -> None:
    """What the next plan's org summaries and access diff compare against: the org and access applied now."""
    baselines.record_snapshots(store, read.head, org_snapshot(read.validation.org.resources()), desired.access)


def settle_inventory(
    store: StateStore,
    live: LiveState | None,
    plan: Plan,
    desired: Mapping[str, ManagedObject],
    head: str,
    run: RunResult,
) -> None:
    """After a run: adopted objects that needed no change join the inventory; entries whose objects are gone
    and no longer declared leave it (there is nothing left to prune)."""
    if live is None or run.refused:
        return
    noop = {c.key for c in plan.changes if c.action is Action.NOOP}
    for key in sorted(live.adopted):
        if key in noop and key in desired:
            store.record(desired[key], head)
    for key, obj in store.inventory().items():
        if obj.provider in live.providers and key not in live.observed and key not in desired:
            store.forget(key)


def _options(
    settings: Settings, options: ApplyOptions | None, allow_mass_delete: bool, stop: threading.Event | None
) -> ApplyOptions:
    opts = options or ApplyOptions.from_settings(settings)
    return replace(opts, allow_mass_delete=opts.allow_mass_delete or allow_mass_delete, stop=stop or opts.stop)


def _resolver(secrets: SecretStore | None) -> Resolve | None:
    return secrets.resolve if secrets is not None else None
