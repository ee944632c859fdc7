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


def test_the_registry_serves_it_and_offline_plans_read_its_traits() -> None:
    from backends.kubernetes import KubernetesBackend
    from gitops.providers import registry
    from gitops.providers.wiring import traits_for
    from gitops.settings.model import RuntimeSettings, Settings

    assert registry.get_class("kubernetes") is KubernetesBackend
    traits = traits_for(Settings(runtime=RuntimeSettings(backend="kubernetes"))).get("runtime", "container")
    assert traits.replace_on == frozenset({"runtime"}) and traits.absent_when == {"state": "Stopped"}
