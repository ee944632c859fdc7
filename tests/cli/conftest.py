"""Fixtures for the command-line tests: real git repositories with the example org, and a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.settings.load import REDACTOR

EXAMPLE = Path(__file__).resolve().parents[2] / "example-org"


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com", GIT_COMMITTER_NAME="Dev",
               GIT_COMMITTER_EMAIL="dev@example.com", GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd))
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def commit_all(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`hiclaw-gitops ARGS` as a separate process, as a user or a CI job runs it."""
    run_env = clean_env()
    run_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gitops", *args], cwd=cwd, env=run_env, capture_output=True,
                          text=True, check=False, timeout=120)


def clean_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HICLAW_GITOPS_", "GIT_")) or k == "GIT_CEILING_DIRECTORIES"}
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    return env


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No settings from the environment, and nothing above tmp_path taken for a git repository."""
    for name in list(os.environ):
        if name.startswith("HICLAW_GITOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    yield
    REDACTOR.clear()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout whose org lives in the folder `org/` (as docs/ci.md allows), committed on `main`."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    shutil.copytree(EXAMPLE, path / "org")
    commit_all(path, "the org")
    return path
