"""Fixtures for the ChatOps tests: one real Synapse per module (installed and started by deploy/synapse.py; one
that cannot start FAILS the tests, never skips them), people in an admin room, and a daemon in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.synapse import Synapse, SynapseError
from gitops.settings.load import REDACTOR

from .harness import ADMIN_PASSWORD


@pytest.fixture(scope="module")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    hs = Synapse(tmp_path_factory.mktemp("synapse") / "hs", admin_password=lambda: ADMIN_PASSWORD)
    try:
        hs.ensure()
    except SynapseError as exc:
        hs.stop()
        pytest.fail(f"SYNAPSE UNAVAILABLE — the ChatOps tests need a real homeserver: {exc}", pytrace=False)
    try:
        yield hs
    finally:
        hs.stop()


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    yield
    REDACTOR.clear()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
