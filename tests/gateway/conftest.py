"""Gateway tests run against the contract fake; with HICLAW_GITOPS_LIVE_SETTINGS set, the tests that take a
`site` also run against that real console, marked `live` (select them with `-m live`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .site import LIVE_ENV, Site


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "site" in metafunc.fixturenames:
        kinds: list[object] = ["fake"]
        if os.environ.get(LIVE_ENV):
            kinds.append(pytest.param("live", marks=pytest.mark.live))
        metafunc.parametrize("site_kind", kinds, scope="function")


@pytest.fixture
def site(site_kind: str, tmp_path: Path) -> Iterator[Site]:
    yield from (Site.on_live() if site_kind == "live" else Site.on_fake(tmp_path))
