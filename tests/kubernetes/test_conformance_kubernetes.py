"""The shared backend conformance suite on the Kubernetes backend (fake API server; a live cluster with KUBECONFIG).

Like Docker, Kubernetes serves one owned type (`runtime/container`) with none of the optional capabilities, so
it runs the core suite alone.
"""

from __future__ import annotations

import pytest
from kubeharness import KubeEnv

from gitops.providers.conformance import ConformanceSuite


class TestKubernetesConformance(ConformanceSuite):
    @pytest.fixture
    def harness(self, kube_env: KubeEnv) -> KubeEnv:
        return kube_env
