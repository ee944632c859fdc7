"""One reconcile pass: read → validate → compile → observe → plan → apply → verify → snapshots.

The daemon (`run`), `apply` and `drift --heal` all call `reconcile`; `apply PLANFILE` calls `apply_saved`,
which applies exactly a reviewed plan after checking it is still fresh. Backends are built from the
settings through `gitops.providers.registry` (`build_backends`), never imported by name.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gitops import pipeline as engine
from gitops.apply.executor import ApplyOptions, RunResult, StalePlan, check_fresh, describe, execute
from gitops.apply.observe import LiveState, ObserveError, observe_live
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore, org_snapshot
from gitops.compile.cache import CompileCache
from gitops.diagnostics import Diagnostic, has_errors
from gitops.objects import DesiredState, ManagedObject, Provider, canonical_json
from gitops.plan import baseline as baselines
from gitops.plan.model import Action, Plan, fingerprint, redact
from gitops.providers import registry
from gitops.providers.protocol import Backend, Resolve
from gitops.settings.model import Settings
from gitops.source.files import FileSource
from gitops.source.load import ParseCache
from gitops.status.model import Condition, PassResult, ResourceStatus, Result


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
    org_refs: tuple[str, ...] = ()  # every resource the commit declares (`Kind/name`)

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
    for provider, section in (
        (Provider.MATRIX, settings.matrix),
        (Provider.STORAGE, settings.storage),
        (Provider.GATEWAY, settings.gateway),
    ):
        if section is not None:
            names[provider] = provider.value
    return names


def build_backends(settings: Settings, secrets: SecretStore | None) -> dict[Provider, Backend]:
    """One backend per configured provider, built as `Class(settings=<the provider's settings section>,
    secrets=<the secret store>)` (a backend that needs no secrets accepts and ignores the keyword)."""
    sections: dict[Provider, Any] = {
        Provider.RUNTIME: settings.runtime,
        Provider.MATRIX: settings.matrix,
        Provider.STORAGE: settings.storage,
        Provider.GATEWAY: settings.gateway,
    }
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
                raise BackendsUnavailable(
                    f"provider {provider.value}: backend {name!r} failed to start: {describe(exc)}"
                ) from None
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
    compile_cache: CompileCache | None = None,
) -> ReconcileResult:
    """Bring live state to the org at `head` (a commit id; empty: the content digest of a directory).

    Invalid input returns its diagnostics and touches nothing. With `dry_run`, stops after the plan. Without
    backends (no provider configured) the baseline is the state store and only the snapshots move.
    """
    read = engine.read_org(source, cache, strict=strict, head=head)
    diagnostics = tuple(read.validation.diagnostics)
    if not read.ok:
        return ReconcileResult(read.head, diagnostics)
    desired = engine.desired_state(read, settings, compile_cache)
    refs = tuple(r.ref for r in read.validation.org.resources())
    try:
        live = observe_live(backends, store, settings.providers, desired.objects) if backends else None
    except ObserveError as exc:
        return ReconcileResult(read.head, diagnostics, error=describe(exc), org_refs=refs)
    current = live.baseline if live else state_baseline(store, settings)
    plan = engine.plan(read, settings, current, desired=desired)
    if dry_run:
        return ReconcileResult(read.head, diagnostics, plan, dry_run=True, org_refs=refs)
    opts = _options(settings, options, allow_mass_delete, stop)
    return _carry_out(plan, read, desired, live, current.objects, backends, store, secrets, opts)


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
        return ReconcileResult(
            read.head,
            diagnostics,
            plan,
            error=(
                f"the saved plan compares against a {plan.compared_against} (an offline review); "
                "only plans made against live or state can be applied"
            ),
        )
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
    return _carry_out(plan, read, desired, live, current.objects, backends, store, secrets, opts)


def _carry_out(
    plan: Plan,
    read: engine.OrgRead,
    desired: DesiredState,
    live: LiveState | None,
    current: Mapping[str, ManagedObject],
    backends: Mapping[Provider, Backend],
    store: StateStore,
    secrets: SecretStore | None,
    opts: ApplyOptions,
) -> ReconcileResult:
    """Execute a plan, settle the inventory, and on success record what the next plan compares against."""
    run = execute(
        plan,
        desired.objects,
        backends,
        store,
        _resolver(secrets),
        opts,
        observed=live.observed if live else None,
        current=current,
    )
    settle_inventory(store, live, plan, desired.objects, read.head, run)
    if run.ok:
        record_snapshots(store, read, desired)
    refs = tuple(r.ref for r in read.validation.org.resources())
    return ReconcileResult(read.head, tuple(read.validation.diagnostics), plan, run, org_refs=refs)


def check_matches(plan: Plan, desired: DesiredState) -> None:
    """Every create/update/replace of the plan must be what the org at head compiles to (StalePlan if not)."""
    for change in plan.changes:
        if change.action in (Action.CREATE, Action.UPDATE, Action.REPLACE):
            obj = desired.objects.get(change.key)
            if obj is None or canonical_json(redact(obj.spec)) != canonical_json(change.after):
                raise StalePlan(
                    f"the saved plan is stale: {change.key} no longer compiles to the planned spec; run `plan` again"
                )
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


# The daemon's pass --------------------------------------------------------------------------------------


class DaemonPass:
    """One reconcile per processed commit, for `hiclaw-gitops run`: the state store, secret store and
    backends are opened once (the daemon holds the state directory's lock) and reused by every pass."""

    def __init__(self, settings: Settings, cache: ParseCache | None = None, strict: bool = False) -> None:
        self.settings = settings
        self.cache = cache
        self.strict = strict
        self.store = StateStore(settings.state_dir)
        self.secrets = SecretStore(settings.state_dir)
        self.backends = build_backends(settings, self.secrets)
        self.compile_cache = CompileCache()  # in memory: the next commit recompiles only the units it changed

    def __call__(self, source: FileSource, commit: str) -> PassResult:
        return to_pass_result(self._reconcile(source, commit, dry_run=False), commit)

    def _reconcile(self, source: FileSource, commit: str, dry_run: bool) -> ReconcileResult:
        return reconcile(
            source,
            self.settings,
            head=commit,
            store=self.store,
            secrets=self.secrets,
            backends=self.backends,
            cache=self.cache,
            strict=self.strict,
            dry_run=dry_run,
            compile_cache=self.compile_cache,
        )

    def drift(self, source: FileSource, commit: str) -> int:
        """How many changes a plan of `commit` against live state has now (0: no drift). Applies nothing."""
        result = self._reconcile(source, commit, dry_run=True)
        if result.error or result.plan is None:
            raise RuntimeError(result.error or "the commit no longer plans")
        return sum(result.plan.counts().values())

    def close(self) -> None:
        close_backends(self.backends)
        self.store.close()


def to_pass_result(result: ReconcileResult, commit: str) -> PassResult:
    """A reconcile's outcome as status: per org resource, the fate of the objects it owns."""
    plan = result.plan
    run = result.run
    summary: dict[str, Any] | None = None
    if plan is not None:
        summary = {
            "counts": plan.counts(),
            "unchanged": plan.unchanged_total,
            "summaries": [s.to_dict() for s in plan.summaries],
            "warnings": list(plan.warnings),
        }
    steps_by_owner: dict[str, list[Any]] = {}
    failures: dict[str, int] = {}
    for step in run.steps if run is not None else ():
        steps_by_owner.setdefault(step.owner, []).append(step)
        if step.status == "failed":
            provider = step.key.split("/", 1)[0]
            failures[provider] = failures.get(provider, 0) + 1
    resources = []
    owners = {s.ref for s in plan.summaries} if plan is not None else set()
    for ref in sorted(owners | set(steps_by_owner) | set(result.org_refs)):
        if ref == "org" or "/" not in ref:
            continue
        kind, name = ref.split("/", 1)
        steps = steps_by_owner.get(ref, [])
        bad = [s for s in steps if s.status in ("failed", "skipped")]
        not_applied = result.error or (run.refused if run is not None else "")
        if not_applied:
            phase, applied = "Pending", Condition("Applied", "False", "NotApplied", not_applied)
        elif bad:
            phase, applied = "Failed", Condition("Applied", "False", "ApplyFailed", bad[0].message)
        else:
            phase, applied = "Ready", Condition("Applied", "True", "Applied", "")
        resources.append(
            ResourceStatus(
                kind,
                name,
                phase,
                observed_commit=commit,
                conditions=(Condition("Valid", "True", "Validated", ""), applied),
                last_error=bad[0].message if bad else "",
            )
        )
    if result.error:
        outcome, message = Result.FAILED, result.error
    elif run is not None and run.refused:
        outcome, message = Result.REFUSED, run.refused
    elif run is not None and not run.ok:
        outcome, message = Result.FAILED, f"{len(run.failed)} change(s) failed, {len(run.skipped)} skipped"
    else:
        counts = plan.counts() if plan is not None else {}
        changed = sum(counts.values())
        message = f"{changed} change(s) applied and verified" if changed else "no changes"
        outcome = Result.RECONCILED
    return PassResult(
        outcome, result.diagnostics, tuple(resources), plan=summary, message=message, provider_failures=failures
    )
