"""The daemon's pass: SIGTERM and a newer commit stop it between steps (what is in flight finishes and is
journalled, nothing new starts), its backends are closed on stop, and without providers it stops at the plan."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.memory import MemoryBackend
from gitops.apply.secrets import KEY_ENV
from gitops.apply.state import StateStore
from gitops.daemon.passes import DaemonPass
from gitops.objects import Provider
from gitops.settings.model import RuntimeSettings, Settings
from gitops.source.files import DirectorySource
from gitops.status.model import Result

EXAMPLE = Path(__file__).resolve().parents[2] / "example-org"
STOPPED = "stopped before it started"


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    root = tmp_path / "org"
    shutil.copytree(EXAMPLE, root)
    yield root


def slow_pass(tmp_path: Path) -> tuple[DaemonPass, MemoryBackend]:
    settings = Settings(runtime=RuntimeSettings(backend="memory", concurrency=1), state_dir=str(tmp_path / "state"))
    daemon_pass = DaemonPass(settings, check_every=0.05)
    runtime = daemon_pass.backends[Provider.RUNTIME]
    assert isinstance(runtime, MemoryBackend)
    runtime.latency = 0.15
    return daemon_pass, runtime


def run_in_thread(daemon_pass: DaemonPass, org: Path) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(daemon_pass(DirectorySource(org), "c1")))
    thread.start()
    return thread, out


def wait_for_writes(backend: MemoryBackend, n: int) -> None:
    deadline = time.monotonic() + 10
    while backend.write_calls < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.write_calls >= n


def test_sigterm_finishes_the_step_in_flight_journals_it_and_starts_nothing_new(org: Path, tmp_path: Path) -> None:
    from gitops.daemon.pollers import PollOutcome
    from gitops.daemon.runner import Daemon

    daemon_pass, runtime = slow_pass(tmp_path)
    daemon = Daemon(lambda: PollOutcome.UNCHANGED, interval=60, stop=daemon_pass.stop)
    thread, out = run_in_thread(daemon_pass, org)
    wait_for_writes(runtime, 2)
    daemon.request_stop(signal.SIGTERM)  # what the SIGTERM handler calls
    thread.join(timeout=10)
    assert not thread.is_alive()
    (status,) = out
    assert status.result is Result.FAILED  # type: ignore[attr-defined]
    writes = runtime.write_calls
    assert 2 <= writes <= 4  # the one in flight finished; at most one more had started when the watcher looked
    store = StateStore(tmp_path / "state")
    assert store.unfinished() == []  # every step that started was journalled as finished
    assert len(store.inventory()) == writes  # and what finished is recorded, so the next pass resumes from there
    store.close()
    assert len(runtime.ours()) == writes
    daemon_pass.close()


def test_a_newer_commit_pre_empts_work_still_waiting(org: Path, tmp_path: Path) -> None:
    daemon_pass, runtime = slow_pass(tmp_path)
    daemon_pass.preempt = lambda: runtime.write_calls >= 2  # the branch moved while this commit was applying
    thread, out = run_in_thread(daemon_pass, org)
    thread.join(timeout=20)
    assert not thread.is_alive()
    (status,) = out
    assert status.result is Result.FAILED  # type: ignore[attr-defined]
    assert any(STOPPED in r.last_error for r in status.resources)  # type: ignore[attr-defined]
    assert runtime.write_calls < len(list(EXAMPLE.rglob("*.yaml")))  # most of the work was left for the next pass
    daemon_pass.preempt = None
    runtime.latency = 0
    again = daemon_pass(DirectorySource(org), "c2")
    assert again.result is Result.RECONCILED, again.message
    daemon_pass.close()


def test_closing_the_pass_closes_its_backends(tmp_path: Path) -> None:
    daemon_pass, runtime = slow_pass(tmp_path)
    daemon_pass.close()
    assert runtime.closed
    daemon_pass.close()  # idempotent


def test_the_run_command_closes_the_pass_when_the_daemon_stops(
    org: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitops.cli import main
    from gitops.daemon import passes

    closed: list[DaemonPass] = []
    real_close = DaemonPass.close

    def record(self: DaemonPass) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(passes.DaemonPass, "close", record)
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"state_dir: {tmp_path / 'state'}\nruntime:\n  backend: memory\nstatus:\n  enabled: false\n")
    assert main(["run", "--once", "--watch", str(org), "--settings", str(settings), "--listen", ""]) == 0
    assert len(closed) == 1


def test_without_providers_the_pass_stops_at_the_plan(org: Path, tmp_path: Path) -> None:
    daemon_pass = DaemonPass(Settings(state_dir=str(tmp_path / "state")))
    status = daemon_pass(DirectorySource(org), "c1")
    assert status.result is Result.VALIDATED and "nothing was applied" in status.message
    assert {r.phase for r in status.resources} == {"Pending"}
    daemon_pass.close()
