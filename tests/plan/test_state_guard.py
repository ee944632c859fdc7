"""The state guard (SPEC §5.4, §5.6): a pass that would stop or put to sleep many running agents declared with
`gitops.hiclaw.io/enforce-state: "true"` is refused like a mass deletion — nothing applied — until allowed.
The runtime is the in-memory reference backend; agents waking themselves are its stored state changing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.memory import MemoryBackend
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import DesiredState, ManagedObject, Provider
from gitops.pipeline import ReconcileResult, reconcile
from gitops.plan.baseline import Baseline
from gitops.plan.guard import guard_names, guards, state_guard
from gitops.settings.model import PruneSettings, RuntimeSettings, Settings
from gitops.source.files import DirectorySource


def worker(name: str, state: str, enforce: bool) -> str:
    note = '  annotations:\n    gitops.hiclaw.io/enforce-state: "true"\n' if enforce else ""
    return (f"apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: {name}\n{note}"
            f"spec:\n  model: qwen3.6-plus\n  state: {state}\n")


@dataclasses.dataclass
class Runtime:
    org: Path
    settings: Settings
    store: StateStore
    secrets: SecretStore
    backend: MemoryBackend

    def write(self, workers: dict[str, tuple[str, bool]]) -> None:
        for name, (state, enforce) in workers.items():
            (self.org / f"{name}.yaml").write_text(worker(name, state, enforce))

    def reconcile(self, allow: bool = False) -> ReconcileResult:
        return reconcile(DirectorySource(self.org), self.settings, store=self.store, secrets=self.secrets,
                         backends={Provider.RUNTIME: self.backend}, allow_mass_delete=allow)

    def states(self) -> dict[str, str]:
        return {k.rsplit("-", 1)[-1]: str(s.spec["state"]) for k, s in self.backend.ours().items()}

    def wake(self, *names: str) -> None:
        """Agents woken by someone (a person talking to them): only their own state changes."""
        for key, stored in self.backend.ours().items():
            if key.rsplit("-", 1)[-1] in names:
                self.backend.objects[key] = dataclasses.replace(stored, spec={**stored.spec, "state": "Running"})


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    org = tmp_path / "org"
    org.mkdir()
    settings = Settings(runtime=RuntimeSettings(backend="memory"), state_dir=str(tmp_path / "state"))
    store, secrets = StateStore(settings.state_dir), SecretStore(settings.state_dir)
    try:
        yield Runtime(org, settings, store, secrets, MemoryBackend())
    finally:
        store.close()
        secrets.close()


def test_a_drift_heal_putting_many_woken_agents_back_to_sleep_is_refused_until_allowed(runtime: Runtime) -> None:
    runtime.write({"a": ("Sleeping", True), "b": ("Sleeping", True), "c": ("Sleeping", True),
                   "d": ("Sleeping", False)})
    assert runtime.reconcile().phase == "applied"
    runtime.wake("a", "b", "c", "d")

    refused = runtime.reconcile()
    assert refused.phase == "refused" and refused.plan is not None and refused.run is not None
    guard = refused.plan.guard
    assert guard["tripped"] and guard["tripped_by"] == ["state"] and guard_names(guard) == "state guard"
    assert guard["stopped_agents"] == ["Worker/a", "Worker/b", "Worker/c"]  # d's state is its own
    assert guard["reasons"] == ["3 of 4 agents would be stopped or put to sleep by enforce-state "
                                "(more than 25%)"]
    assert any(w.startswith("state guard: 3 of 4") and w.endswith("Worker/a, Worker/b, Worker/c — apply refuses "
                                                                  "without --allow-mass-delete")
               for w in refused.plan.warnings)
    assert refused.run.refused.startswith("state guard: 3 of 4 agents would be stopped")
    assert runtime.states() == {"a": "Running", "b": "Running", "c": "Running", "d": "Running"}  # nothing applied

    allowed = runtime.reconcile(allow=True)
    assert allowed.phase == "applied"
    assert runtime.states() == {"a": "Sleeping", "b": "Sleeping", "c": "Sleeping", "d": "Running"}


def test_one_woken_agent_is_healed_without_asking(runtime: Runtime) -> None:
    runtime.write({"a": ("Sleeping", True), "b": ("Sleeping", True), "c": ("Sleeping", True),
                   "d": ("Sleeping", True), "e": ("Sleeping", True)})
    assert runtime.reconcile().phase == "applied"
    runtime.wake("a")
    healed = runtime.reconcile()
    assert healed.phase == "applied" and healed.plan is not None and not healed.plan.guard["tripped"]
    assert healed.plan.guard["stopped_agents"] == ["Worker/a"]
    assert runtime.states()["a"] == "Sleeping"


def test_a_commit_stopping_many_enforced_agents_trips_the_state_guard_and_deleting_too_trips_both(
        runtime: Runtime) -> None:
    runtime.write({n: ("Running", True) for n in "abcdefg"})
    assert runtime.reconcile().phase == "applied"
    runtime.write({n: ("Stopped", True) for n in "abcdef"})  # six, over prune.max_agents (5)
    plan = runtime.reconcile().plan
    assert plan is not None and plan.guard["tripped_by"] == ["state"]
    assert plan.guard["reasons"] == ["6 running agents with enforce-state would be stopped or put to sleep (limit 5)"]

    for name in "abcdef":
        (runtime.org / f"{name}.yaml").unlink()
    both = runtime.reconcile().plan
    assert both is not None and both.guard["tripped_by"] == ["prune"]  # deleted, not stopped
    assert runtime.states() == dict.fromkeys("abcdefg", "Running")


def container(name: str, state: str, enforce: bool = True, team: str = "") -> ManagedObject:
    labels = {"hiclaw.io/kind": "Team" if team else "Worker", "hiclaw.io/name": name}
    if team:
        labels["hiclaw.io/team"] = team
    return ManagedObject(Provider.RUNTIME, "container", f"hiclaw-worker-{name}",
                         {"state": state, "enforce_state": enforce, "labels": labels}, "Worker/" + name)


def test_the_state_guard_counts_running_enforced_agents_only_and_names_team_members() -> None:
    before = [container("a", "Running"), container("b", "Running", team="t"), container("c", "Sleeping"),
              container("d", "Running", enforce=False), container("e", "Running")]
    after = [container("a", "Stopped"), container("b", "Sleeping", team="t"), container("c", "Stopped"),
             container("d", "Stopped", enforce=False), container("e", "Running")]
    current = Baseline("live", "c1", {o.key: o for o in before})
    desired = DesiredState({o.key: o for o in after}, frozenset({Provider.RUNTIME}))
    verdict = state_guard(desired, current, PruneSettings(max_agents=1, max_fraction=0.9))
    assert verdict["stopped_agents"] == ["Team/t/b", "Worker/a"] and verdict["tripped"]
    assert state_guard(desired, current, PruneSettings(max_agents=2, max_fraction=0.9))["tripped"] is False
    # A fraction of the agents (five containers), with at least two stopped: 2/5.
    assert state_guard(desired, current, PruneSettings(max_agents=9, max_fraction=0.39))["tripped"]
    assert not state_guard(desired, current, PruneSettings(max_agents=9, max_fraction=0.4))["tripped"]
    guard, warnings = guards(desired, current, PruneSettings(enabled=False, max_agents=1))
    assert guard["tripped_by"] == ["state"] and len(warnings) == 1  # prune off deletes nothing; stops still count
