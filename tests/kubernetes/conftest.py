"""Kubernetes tests run on the in-process fake API server. Asked for with `-m live` and with KUBECONFIG set, the
same tests run on that cluster too, marked `live` (namespace HICLAW_TEST_NAMESPACE, default `hiclaw-test`);
a KUBECONFIG in the environment alone never sends a test to a real cluster."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakeapi import FakeApiServer
from kubeharness import KubeEnv

LIVE_KUBECONFIG = os.environ.get("KUBECONFIG", "")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cluster_kind" in metafunc.fixturenames:
        params: list[object] = ["fake"]
        if LIVE_KUBECONFIG and "live" in (metafunc.config.getoption("markexpr") or ""):
            params.append(pytest.param("live", marks=pytest.mark.live))
        metafunc.parametrize("cluster_kind", params)


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig")))
    yield server
    server.stop()


@pytest.fixture
def kube_env(cluster_kind: str, request: pytest.FixtureRequest) -> Iterator[KubeEnv]:
    if cluster_kind == "live":
        env = KubeEnv(os.environ.get("HICLAW_TEST_NAMESPACE", "hiclaw-test"), None)
    else:
        server: FakeApiServer = request.getfixturevalue("fake_server")
        env = KubeEnv("hiclaw", server.cluster)
    yield env
    env.cleanup()
