"""The backend conformance suite on the gateway backend's consumers, against the contract fake.

`ConformanceSuite` runs on consumers (owned, a secret key). No field of a consumer forces re-creation, so a
"replace" is carried out in place (`replaced` is None). Grants are
shared records, but `SharedRecordSuite` does not fit as it stands: a grant is listed only when its consumer is
one of ours, so every entry comes with a consumer the suite's "exactly these keys" checks would count; its cases
are in test_shared_grants.py, on both grant types, with the executor's one-change-per-record check.
`WriteOnlySuite` does not apply: nothing the gateway writes is unreadable except the key, a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.providers.conformance import (
    ConformanceSuite,
)

from .harness import GatewayHarness
from .site import Site


class TestGatewayConsumers(ConformanceSuite):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[GatewayHarness]:
        for site in Site.on_fake(tmp_path):
            harness = GatewayHarness(site, tmp_path / "state")
            yield harness
            harness.close()
