"""Prometheus metrics of the daemon, in a registry of its own (never the process-global one)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gitops.status.model import StatusSnapshot

CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """Reconciles and their durations by result, the last reconciled commit and time, resources by phase,
    failures by provider, polls, force-pushes, status writes and webhook deliveries."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.reconciles = Counter("hiclaw_gitops_reconciles", "Passes over a commit, by result.", ["result"],
                                  registry=r)
        self.duration = Histogram("hiclaw_gitops_reconcile_duration_seconds", "Duration of a pass, by result.",
                                  ["result"], buckets=DURATION_BUCKETS, registry=r)
        self.last_commit = Gauge("hiclaw_gitops_last_reconciled_commit_info",
                                 "The commit of the last pass (value 1), with its result.", ["commit", "result"],
                                 registry=r)
        self.last_time = Gauge("hiclaw_gitops_last_reconcile_timestamp_seconds",
                               "Unix time at which the last pass finished.", registry=r)
        self.last_success = Gauge("hiclaw_gitops_last_success_timestamp_seconds",
                                  "Unix time of the last pass whose result was Reconciled or Validated.", registry=r)
        self.resources = Gauge("hiclaw_gitops_resources", "Org resources by kind and phase.", ["kind", "phase"],
                               registry=r)
        self.degraded = Gauge("hiclaw_gitops_degraded_resources", "Resources failing for K runs or more.", registry=r)
        self.provider_failures = Counter("hiclaw_gitops_provider_failures", "Failed changes or calls, by provider.",
                                         ["provider"], registry=r)
        self.polls = Counter("hiclaw_gitops_polls", "Polls of the source, by outcome.", ["outcome"], registry=r)
        self.drift_checks = Counter("hiclaw_gitops_drift_checks", "Drift checks against live state, by result.",
                                    ["result"], registry=r)
        self.drift_changes = Gauge("hiclaw_gitops_drift_changes", "Changes the last drift check found.", registry=r)
        self.force_pushes = Counter("hiclaw_gitops_force_pushes", "Rewritten branches seen (force-pushes).", registry=r)
        self.status_writes = Counter("hiclaw_gitops_status_writes", "Status write-backs, by outcome.", ["outcome"],
                                     registry=r)
        self.webhooks = Counter("hiclaw_gitops_webhooks", "Webhook deliveries, by outcome.", ["outcome"], registry=r)
        self.ready = Gauge("hiclaw_gitops_ready", "1 when the last poll reached the source.", registry=r)

    def observe_pass(self, result: str, seconds: float, commit: str, finished_at: float,
                     snapshot: StatusSnapshot) -> None:
        self.reconciles.labels(result).inc()
        self.duration.labels(result).observe(seconds)
        self.last_commit.clear()
        self.last_commit.labels(commit, result).set(1)
        self.last_time.set(finished_at)
        if result in ("Reconciled", "Validated"):
            self.last_success.set(finished_at)
        self.set_resources(snapshot)

    def set_resources(self, snapshot: StatusSnapshot) -> None:
        self.resources.clear()
        counts: dict[tuple[str, str], int] = {}
        for res in snapshot.resources.values():
            counts[(res.kind, res.phase)] = counts.get((res.kind, res.phase), 0) + 1
        for (kind, phase), n in counts.items():
            self.resources.labels(kind, phase).set(n)
        self.degraded.set(sum(1 for r in snapshot.resources.values() if r.phase == "Degraded"))

    def count_failures(self, by_provider: Mapping[str, int]) -> None:
        for provider, n in by_provider.items():
            if n:
                self.provider_failures.labels(provider).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
