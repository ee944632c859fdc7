"""`run --once` exit codes, and `status` / `history` as an operator reads them (real git, real processes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import EXAMPLE, cli, commit_all, git

# Two schema errors on known lines: `model` must be a string (6:10), `colour` is no field (7:3).
INVALID_WORKER = (
    "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: broken\nspec:\n  model: 42\n  colour: red\n"
)


@pytest.fixture
def daemon_args(repo: Path, tmp_path: Path) -> list[str]:
    """The daemon follows a bare remote that `repo` pushes to (see `push`)."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    return ["--repo", str(bare), "--path", "org", "--state-dir", str(tmp_path / "state")]


def push(repo: Path, message: str) -> str:
    commit = commit_all(repo, message)
    git(repo, "push", "-q", "origin", "main")
    return commit


def once(args: list[str], cwd: Path) -> tuple[int, str]:
    done = cli("run", "--once", *args, "--log-format", "text", cwd=cwd)
    return done.returncode, done.stderr


def test_run_once_exits_0_for_a_valid_commit_and_1_for_an_invalid_one(repo: Path, daemon_args: list[str],
                                                                      tmp_path: Path) -> None:
    code, log = once(daemon_args, tmp_path)
    assert code == 0, log
    assert "result=Validated" in log
    (repo / "org/workers/broken.yaml").write_text(INVALID_WORKER)
    commit = push(repo, "broken")
    code, log = once(daemon_args, tmp_path)
    # The reproduction: this logged result=Invalid and exited 0, although docs/operations.md promised 1.
    assert "result=Invalid" in log
    assert code == 1
    assert f"the commit {commit[:12]} was not reconciled: Invalid" in log
    code, _ = once(daemon_args, tmp_path)  # nothing new, but the head is still the invalid commit
    assert code == 1
    (repo / "org/workers/broken.yaml").unlink()
    push(repo, "fixed")
    code, log = once(daemon_args, tmp_path)
    assert code == 0, log


def test_no_status_yet_status_and_history_agree(repo: Path, daemon_args: list[str], tmp_path: Path) -> None:
    status = cli("status", *daemon_args[:2], daemon_args[4], daemon_args[5], cwd=tmp_path)
    history = cli("history", *daemon_args[:2], daemon_args[4], daemon_args[5], cwd=tmp_path)
    assert (status.returncode, history.returncode) == (0, 0), status.stderr + history.stderr
    assert status.stdout == history.stdout == "No status has been written yet.\n"


def _status(daemon_args: list[str], tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    done = cli("status", daemon_args[0], daemon_args[1], daemon_args[4], daemon_args[5], *extra, cwd=tmp_path)
    return done.returncode, done.stdout, done.stderr


def test_status_lists_the_diagnostics_and_conditions_it_counts(repo: Path, daemon_args: list[str],
                                                               tmp_path: Path) -> None:
    assert once(daemon_args, tmp_path)[0] == 0
    (repo / "org/workers/broken.yaml").write_text(INVALID_WORKER)
    commit = push(repo, "broken")
    assert once(daemon_args, tmp_path)[0] == 1
    code, out, err = _status(daemon_args, tmp_path)
    assert code == 0, err
    # The reproduction: "2 errors" was printed and never listed.
    assert "(2 errors, 0 warnings)" in out
    assert "org/workers/broken.yaml:6:10: error[S303]" in out
    assert "org/workers/broken.yaml:7:3: error[S301]" in out
    block = out.split("\nWorker/broken (org/workers/broken.yaml): Invalid\n", 1)[1]
    assert block.startswith("  Valid=False ValidationFailed: org/workers/broken.yaml:6:10: S303:")
    # a resource that was fine keeps its status, with the condition that says why it was not re-applied
    writer = out.split("\nWorker/docs-writer (org/workers/docs-writer.yaml): Pending\n", 1)[1].split("\n\n", 1)[0]
    assert writer.splitlines() == [
        "  Valid=True Validated",
        "  Applied=Unknown NoProvider: no provider is configured in the settings: nothing was applied",
        f"  Reconciled=False InvalidCommit: commit {commit[:12]} is invalid; nothing was applied",
    ]


def test_status_of_one_resource_and_of_an_unknown_one(repo: Path, daemon_args: list[str], tmp_path: Path) -> None:
    assert once(daemon_args, tmp_path)[0] == 0
    code, out, _ = _status(daemon_args, tmp_path, "worker/docs-writer")
    assert code == 0
    assert "Worker/docs-writer (org/workers/docs-writer.yaml): Pending" in out
    assert "Applied=Unknown NoProvider" in out and "Worker/kb-curator" not in out
    # The reproduction: `status worker/nope` printed "No resources." and exited 0.
    code, out, err = _status(daemon_args, tmp_path, "worker/nope")
    assert code == 1
    assert err == "hiclaw-gitops: no status for Worker/nope: the last run does not name it\n"
    code, _, err = _status(daemon_args, tmp_path, "wokrer/docs-writer")
    assert code == 1 and "unknown kind" in err
    code, out, _ = _status(daemon_args, tmp_path, "manager", "--format", "json")
    assert code == 0 and [r["kind"] for r in json.loads(out)["resources"]] == ["Manager"]


def test_history_lists_the_runs(repo: Path, daemon_args: list[str], tmp_path: Path) -> None:
    assert once(daemon_args, tmp_path)[0] == 0
    (repo / "org/workers/broken.yaml").write_text(INVALID_WORKER)
    push(repo, "broken")
    assert once(daemon_args, tmp_path)[0] == 1
    done = cli("history", daemon_args[0], daemon_args[1], daemon_args[4], daemon_args[5], "--format", "json",
               cwd=tmp_path)
    assert done.returncode == 0
    assert [e["result"] for e in json.loads(done.stdout)] == ["Invalid", "Validated"]


def test_status_and_history_with_no_repository_configured_say_so(tmp_path: Path) -> None:
    for command in ("status", "history"):
        done = cli(command, cwd=tmp_path)
        assert done.returncode == 1
        assert "no repository configured" in done.stderr and "pass --repo" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no cache was made for nothing


def test_the_daemon_never_reads_a_settings_file_at_the_org_root(repo: Path, daemon_args: list[str],
                                                              tmp_path: Path) -> None:
    # docs/ci.md suggests committing hiclaw-gitops.yaml beside the org; the daemon must not take it for a document
    (repo / "org/hiclaw-gitops.yaml").write_text("prune:\n  enabled: true\n")
    push(repo, "settings beside the org")
    code, log = once(daemon_args, tmp_path)
    assert code == 0, log
    assert "result=Validated" in log and "K201" not in log


def test_watch_mode_leaves_out_the_settings_and_its_own_status_files(tmp_path: Path) -> None:
    org = tmp_path / "org"
    shutil.copytree(EXAMPLE, org)
    (org / "hiclaw-gitops.yaml").write_text("state_dir: .state\n")
    for attempt in (1, 2):  # the second pass sees the status files the first wrote into .state/status/
        done = cli("run", "--once", "--watch", ".", "--log-format", "text", cwd=org)
        assert done.returncode == 0, done.stderr
        assert "result=Validated" in done.stderr and "K201" not in done.stderr, attempt
    assert any((org / ".state/status").rglob("*.yaml"))
