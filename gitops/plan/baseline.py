"""Baselines: what a plan compares desired state against — another commit or directory, the state store, or live.

Every baseline has the same shape: managed objects by key, the org snapshot they came from (for org-level
summaries), the access report, and a label saying where it came from. Live observation (backends) plugs
in through `Baseline` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitops.apply.state import StateStore
from gitops.compile import access as access_report
from gitops.compile.access import AccessReport
from gitops.objects import ManagedObject

ORG_SNAPSHOT = "org_snapshot"
ACCESS_SNAPSHOT = "access_snapshot"
LAST_COMMIT = "last_applied_commit"


@dataclass(frozen=True, slots=True)
class Baseline:
    kind: str  # live | state | commit | directory | empty
    label: str
    objects: Mapping[str, ManagedObject]
    org: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    access: AccessReport | None = None


def empty() -> Baseline:
    return Baseline("empty", "nothing applied yet", {})


def from_state(store: StateStore) -> Baseline:
    """The inventory of what this reconciler applied, with the org and access of the last applied commit."""
    return Baseline(
        "state",
        store.get_meta(LAST_COMMIT, "") or "state store",
        store.inventory(),
        store.get_meta(ORG_SNAPSHOT, {}),
        access_report.from_state(store.get_meta(ACCESS_SNAPSHOT)),
    )


def record_snapshots(
    store: StateStore, commit: str, org: Mapping[str, Mapping[str, Any]], access: AccessReport | None
) -> None:
    """After a successful apply: what the state baseline compares the next plan against."""
    store.put_meta(ORG_SNAPSHOT, org)
    store.put_meta(ACCESS_SNAPSHOT, access_report.to_state(access) if access is not None else None)
    store.put_meta(LAST_COMMIT, commit)
