"""The shared backend conformance suite (protocol v2), run on the Docker backend with container objects.

Docker serves one owned type (`runtime/container`) and has none of the optional capabilities — it produces no
outputs, holds no shared records and has no write-only fields — so it runs the core suite alone. The harness
(`dockerharness.DockerEnv`) builds backends from a `BackendContext` whose settings are this session's
`RuntimeSettings` (its own instance label and network), on the real engine.
"""

from __future__ import annotations

import pytest
from dockerharness import DockerEnv

from gitops.providers.conformance import ConformanceSuite


class TestDockerConformance(ConformanceSuite):
    @pytest.fixture
    def harness(self, docker_env: DockerEnv) -> DockerEnv:
        return docker_env
