"""Fixtures for the Matrix tests: a real Synapse (installed into its own virtualenv when missing, SQLite, loopback),
one per test module, and a fresh one for tests that need a server nobody else wrote to. A homeserver that cannot
be installed or started FAILS the tests — it is never a skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mxsite import ADMIN_PASSWORD

from deploy.synapse import Synapse, SynapseError


def start(root: Path) -> Synapse:
    hs = Synapse(root / "hs", admin_password=lambda: ADMIN_PASSWORD)
    try:
        hs.ensure()
    except SynapseError as exc:
        hs.stop()
        pytest.fail(f"SYNAPSE UNAVAILABLE — the Matrix tests need a real homeserver: {exc}", pytrace=False)
    return hs


@pytest.fixture(scope="module")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    hs = start(tmp_path_factory.mktemp("synapse"))
    try:
        yield hs
    finally:
        hs.stop()


@pytest.fixture
def fresh_homeserver(tmp_path: Path) -> Iterator[Synapse]:
    hs = start(tmp_path)
    try:
        yield hs
    finally:
        hs.stop()
