"""Fixtures with real git: a bare 'remote' with a work tree, and a loopback git daemon (it must start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.settings.load import REDACTOR

from .gitutil import GitDaemon, OrgRepo


@pytest.fixture
def org(tmp_path: Path) -> OrgRepo:
    return OrgRepo(tmp_path / "remote")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    """A git daemon serving tmp_path/served. If it cannot start, the test fails — it is never skipped."""
    base = tmp_path / "served"
    base.mkdir()
    d = GitDaemon(base).start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    yield
    REDACTOR.clear()
