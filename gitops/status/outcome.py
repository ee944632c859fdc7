"""A pass's outcome as status: per org resource, the fate of the objects it owns (or why nothing happened)."""

from __future__ import annotations

from typing import Any

from gitops.diagnostics import counts
from gitops.pipeline import ReconcileResult
from gitops.reports import rebased
from gitops.status.model import Condition, PassResult, Phase, ResourceStatus, Result, invalid_resources

APPLY_UNAVAILABLE = "no provider is configured in the settings: nothing was applied"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _in_repo(file: str, prefix: str) -> str:
    return f"{prefix.strip('/')}/{file}" if prefix.strip("/") and file else file


def invalid_result(result: ReconcileResult, prefix: str = "") -> PassResult:
    """An invalid commit: every diagnostic, and the resources it names marked invalid; nothing applied. Files are
    named relative to the repository root (the org root is `prefix` inside it)."""
    diagnostics = tuple(rebased(result.diagnostics, prefix))
    errors, warnings = counts(diagnostics)
    named: list[tuple[str, str, str]] = []
    if result.read is not None:
        for d in result.read.loaded.documents:
            if isinstance(d.data, dict) and isinstance(d.data.get("metadata"), dict):
                kind, name = d.data.get("kind"), d.data["metadata"].get("name")
                if isinstance(kind, str) and isinstance(name, str):
                    named.append((kind, name, _in_repo(d.file, prefix)))
    return PassResult(
        Result.INVALID, diagnostics, invalid_resources(diagnostics, named),
        message=f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}: "
                "the commit is invalid and nothing was applied",
    )


def planned_only(result: ReconcileResult, commit: str, prefix: str = "") -> PassResult:
    """No provider configured: the pass stopped at the plan — resources `Pending`, `Applied=Unknown`, and the
    result `Validated`, never `Reconciled`."""
    resources = tuple(
        ResourceStatus(
            res.kind, res.name, Phase.PENDING.value, observed_commit=commit, file=_in_repo(res.file, prefix),
            conditions=(
                Condition("Valid", "True", "Validated", ""),
                Condition("Applied", "Unknown", "NoProvider", APPLY_UNAVAILABLE),
            ),
        )
        for res in (result.read.validation.org.resources() if result.read is not None else ())
    )
    return PassResult(Result.VALIDATED, tuple(rebased(result.diagnostics, prefix)), resources,
                      message=f"valid; {APPLY_UNAVAILABLE}")


def to_pass_result(result: ReconcileResult, commit: str, prefix: str = "") -> PassResult:
    """A reconcile's outcome as status: per org resource, the fate of the objects it owns."""
    if not result.valid:
        return invalid_result(result, prefix)
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
        outcome, tuple(rebased(result.diagnostics, prefix)), tuple(resources), plan=summary, message=message,
        provider_failures=failures,
    )
