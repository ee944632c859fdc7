"""The shared backend conformance suite, run on the Docker backend with container objects."""

from __future__ import annotations

import pytest
from dockerharness import DockerEnv

from gitops.providers.conformance import ConformanceSuite


class TestDockerConformance(ConformanceSuite):
    @pytest.fixture
    def harness(self, docker_env: DockerEnv) -> DockerEnv:
        return docker_env
