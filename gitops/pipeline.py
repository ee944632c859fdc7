"""The one pass: read → validate → compile → observe → plan → apply → verify → record.

Each stage is a function of values in its own package; this module only sequences them. Every caller goes
through here: `plan` (stopping at the plan, offline or against state), `apply` and `drift --heal`
(`reconcile`), `apply PLANFILE` (`apply_saved`, which applies exactly a reviewed plan once it is known to be
fresh), and the daemon, whose pass is `reconcile` — stopping at the plan when no provider is configured.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gitops.apply.executor import ApplyOptions, describe, execute
from gitops.apply.observe import LiveState, ObserveError, observe_live
from gitops.apply.result import RunResult
from gitops.apply.secrets import SecretStore, consumed_digest
from gitops.apply.state import StateStore, org_snapshot
from gitops.compile import CompileCache, compile_org
from gitops.compile import access as access_report
from gitops.diagnostics import Diagnostic, has_errors
from gitops.gcpause import paused_gc
from gitops.objects import DesiredState, ManagedObject, Provider, secret_refs
from gitops.plan import baseline as baselines
from gitops.plan.guard import guards
from gitops.plan.model import Action, Plan, fingerprint, make_plan
from gitops.plan.saved import StalePlan, check_fresh, check_matches
from gitops.providers.protocol import Backend
from gitops.providers.wiring import Traits, traits_for, unserved
from gitops.settings.model import DEFAULT_SERVER_NAME, Settings
from gitops.source.files import FileSource
from gitops.source.load import LoadResult, ParseCache, load
from gitops.validate.check import Validation, settings_checks, validate

# Read and validate ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrgRead:
    """A validated org chart and where it came from."""

    head: str
    loaded: LoadResult
    validation: Validation

    @property
    def ok(self) -> bool:
        return self.validation.ok


def read_org(
    source: FileSource,
    cache: ParseCache | None = None,
    strict: bool = False,
    head: str = "",
    *,
    server_name: str = DEFAULT_SERVER_NAME,
    storage_identity: str = "",
) -> OrgRead:
    """Load and validate; `server_name` (settings' `matrix.server_name`) is what full Matrix IDs are checked on,
    `storage_identity` what agents' access keys must suit (`**settings_checks(settings)` passes both)."""
    with paused_gc():
        loaded = load(source, cache)
        validation = validate(loaded, strict=strict, escapes=source.escapes, cache=cache, server_name=server_name,
                              storage_identity=storage_identity)
        return OrgRead(head or digest(loaded), loaded, validation)


def digest(loaded: LoadResult) -> str:
    """A content digest of a directory's org files: `dir:<16 hex>`, stable across machines."""
    h = hashlib.sha256()
    for path in sorted(loaded.files):
        h.update(f"{path}\0{loaded.files[path].blob_id}\n".encode())
    return "dir:" + h.hexdigest()[:16]


# Compile --------------------------------------------------------------------------------------------


def desired_state(read: OrgRead, settings: Settings, cache: CompileCache | None = None) -> DesiredState:
    """The compiled org; with a cache, units whose inputs did not change are reused (same result either way)."""
    return compile_org(read.validation.org, settings, cache)


def baseline_of(
    read: OrgRead, settings: Settings, kind: str, cache: CompileCache | None = None
) -> baselines.Baseline:
    """Another commit's or directory's desired state, as an offline baseline."""
    desired = desired_state(read, settings, cache)
    return baselines.Baseline(
        kind, read.head, desired.objects, org_snapshot(read.validation.org.resources()), desired.access
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the secret store says about the desired state, read without generating anything: each
    consumer carrying the digest of the values it consumes, and the producers whose outputs are missing."""

    desired: DesiredState
    reissue: Mapping[str, tuple[str, ...]]


def with_credentials(desired: DesiredState, secrets: SecretStore | None) -> Credentials:
    if secrets is None:
        return Credentials(desired, {})
    objects: dict[str, ManagedObject] = {}
    for key, obj in desired.objects.items():
        names = set(secret_refs(obj.spec))
        objects[key] = obj.with_consumed(consumed_digest(names, secrets.peek)) if names else obj
    reissue = {
        key: missing
        for key, obj in desired.objects.items()
        if obj.produces and (missing := tuple(n for n in obj.produces if secrets.peek(n) is None))
    }
    return Credentials(replace(desired, objects=objects), reissue)


# Plan -----------------------------------------------------------------------------------------------


def plan(
    read: OrgRead,
    settings: Settings,
    current: baselines.Baseline,
    desired: DesiredState | None = None,
    all_providers: bool = False,
    cache: CompileCache | None = None,
    *,
    traits: Traits | None = None,
    reissue: Mapping[str, tuple[str, ...]] | None = None,
) -> Plan:
    """Plan the head org against a baseline. With all_providers, disabled providers are planned too (offline).
    Pure apart from compiling: `traits` default to those of the backends the settings select."""
    effective = settings.with_all_providers() if all_providers else settings
    traits = traits or traits_for(settings)
    with paused_gc():
        desired = desired or desired_state(read, effective, cache)
        access = access_report.diff(current.access, desired.access) if desired.access is not None else None
        new_org = org_snapshot(read.validation.org.resources())
        guard, guard_warnings = guards(desired, current, settings.prune, new_org)
        # What the settings leave out is no news in an offline plan (every provider is planned there); what is
        # wrong with the org itself is news in every plan.
        warnings = [*(desired.notes if not all_providers else ()), *desired.warnings]
        # Validation warnings reach every view of the plan (a PR comment included), not only the terminal.
        warnings += [f"{d.file}:{d.line}: {d.code}: {d.message}" for d in read.validation.diagnostics
                     if d.severity.value == "warning"]
        warnings += guard_warnings
        return make_plan(
            desired=desired.objects,
            current=current.objects,
            head=read.head,
            base=current.label,
            compared_against=current.kind,
            providers=effective.providers,
            disabled_notes={p.value: "no settings section" for p in Provider},
            old_org=current.org,
            new_org=new_org,
            access=access,
            warnings=warnings,
            guard=guard,
            replace_on=lambda obj: traits.of(obj).replace_on,
            prune=settings.prune.enabled,
            reissue=reissue,
        )


def state_baseline(store: StateStore, settings: Settings) -> baselines.Baseline:
    """The state store's baseline, limited to enabled providers: a disabled provider's objects are left alone."""
    base = baselines.from_state(store)
    enabled = settings.providers
    return replace(base, objects={k: o for k, o in base.objects.items() if o.provider in enabled})


# The pass -------------------------------------------------------------------------------------------


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
    read: OrgRead | None = None

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

    Invalid input returns its diagnostics and touches nothing. With `dry_run`, or with no backend at all
    (no provider configured: the baseline is the state store), it stops after the plan. `stop` (SIGTERM, a
    newer commit) lets the steps in flight finish and starts nothing new.
    """
    read = read_org(source, cache, strict=strict, head=head, **settings_checks(settings))
    diagnostics = tuple(read.validation.diagnostics)
    if not read.ok:
        return ReconcileResult(read.head, diagnostics, read=read)
    refs = tuple(r.ref for r in read.validation.org.resources())
    creds = with_credentials(desired_state(read, settings, compile_cache), secrets)
    desired = creds.desired
    problems = unserved(desired.objects.values(), backends)
    if problems:
        return ReconcileResult(read.head, diagnostics, error="; ".join(problems), org_refs=refs, read=read)
    traits = Traits.of_backends(backends) if backends else traits_for(settings)
    try:
        live = observe_live(backends, store, settings.providers, desired.objects, traits) if backends else None
    except ObserveError as exc:
        return ReconcileResult(read.head, diagnostics, error=describe(exc), org_refs=refs, read=read)
    current = live.baseline if live else state_baseline(store, settings)
    the_plan = plan(read, settings, current, desired=desired, traits=traits, reissue=creds.reissue)
    if dry_run or not backends:
        return ReconcileResult(read.head, diagnostics, the_plan, dry_run=True, org_refs=refs, read=read)
    opts = _options(settings, options, allow_mass_delete, stop)
    return _carry_out(the_plan, read, desired, live, current.objects, backends, store, secrets, opts, traits)


def apply_saved(
    saved: Plan,
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
    """Apply exactly `saved` (made earlier by `plan --out`), refusing it as stale if the head or the observed
    state moved, or if the org at head no longer compiles to the plan's changes."""
    read = read_org(source, cache, strict=strict, head=head, **settings_checks(settings))
    diagnostics = tuple(read.validation.diagnostics)
    if not read.ok:
        return ReconcileResult(read.head, diagnostics, saved, read=read)
    if saved.compared_against not in ("live", "state"):
        return ReconcileResult(
            read.head,
            diagnostics,
            saved,
            error=(
                f"the saved plan compares against a {saved.compared_against} (an offline review); "
                "only plans made against live or state can be applied"
            ),
            read=read,
        )
    desired = with_credentials(desired_state(read, settings), secrets).desired
    traits = Traits.of_backends(backends) if backends else traits_for(settings)
    live: LiveState | None = None
    try:
        if saved.compared_against == "live":
            if not backends:
                raise StalePlan("the saved plan was made against live state, but no provider is configured now")
            live = observe_live(backends, store, settings.providers, desired.objects, traits)
            current = live.baseline
        else:
            current = state_baseline(store, settings)
        check_fresh(saved, read.head, fingerprint(current.objects))
        check_matches(saved, desired)
    except ObserveError as exc:
        return ReconcileResult(read.head, diagnostics, saved, error=describe(exc), read=read)
    except StalePlan as exc:
        return ReconcileResult(read.head, diagnostics, saved, error=str(exc), read=read)
    opts = _options(settings, options, allow_mass_delete, stop)
    return _carry_out(saved, read, desired, live, current.objects, backends, store, secrets, opts, traits)


def _carry_out(
    the_plan: Plan,
    read: OrgRead,
    desired: DesiredState,
    live: LiveState | None,
    current: Mapping[str, ManagedObject],
    backends: Mapping[Provider, Backend],
    store: StateStore,
    secrets: SecretStore | None,
    opts: ApplyOptions,
    traits: Traits,
) -> ReconcileResult:
    """Apply, verify, settle the inventory, and on success record what the next plan compares against."""
    run = execute(
        the_plan,
        desired.objects,
        backends,
        store,
        secrets,
        opts,
        observed=live.observed if live else None,
        current=current,
        traits=traits,
    )
    settle_inventory(store, live, the_plan, desired.objects, read.head, run)
    if run.ok:
        baselines.record_snapshots(
            store, read.head, org_snapshot(read.validation.org.resources()), desired.access
        )
    refs = tuple(r.ref for r in read.validation.org.resources())
    return ReconcileResult(read.head, tuple(read.validation.diagnostics), the_plan, run, org_refs=refs, read=read)


def settle_inventory(
    store: StateStore,
    live: LiveState | None,
    the_plan: Plan,
    desired: Mapping[str, ManagedObject],
    head: str,
    run: RunResult,
) -> None:
    """After a run: adopted objects that needed no change join the inventory; entries whose objects are gone
    and no longer declared leave it (there is nothing left to prune)."""
    if live is None or run.refused:
        return
    noop = {c.key for c in the_plan.changes if c.action is Action.NOOP}
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
