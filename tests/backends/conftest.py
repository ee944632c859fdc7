"""Fixtures for backend tests on a real Docker engine: the engine (started if need be, never skipped), the
stand-in image built once per session, and a per-test environment that removes what the test created.

Every container a test creates carries the session label `hiclaw.io/test-session=<id>` and the test-only
instance `hiclaw-test-<id>` (see dockerharness.py); nothing else on the engine is listed or touched.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
from dockerharness import IMAGES, NETWORK, DockerEnv, remove_session_containers

from deploy.localstack import StackError, build_stand_in, engine_answers, ensure_engine, image_exists

ENGINE_STATE = Path(tempfile.gettempdir()) / "hiclaw-gitops-test-engine"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of a running engine; starts one (as the local stack does) when none answers, else FAILS."""
    if not engine_answers():
        try:
            ensure_engine(ENGINE_STATE)
        except StackError as exc:
            pytest.fail(f"DOCKER ENGINE UNAVAILABLE — the Docker tests need a real engine: {exc}", pytrace=False)
    client = docker.from_env(timeout=60)
    try:
        yield client
    finally:
        remove_session_containers(client)
        for net in client.api.networks(names=[NETWORK]):
            if net.get("Name") == NETWORK:
                client.api.remove_network(net["Id"])
        client.close()


@pytest.fixture(scope="session")
def images(docker_client: Any) -> Mapping[str, str]:
    """The stand-in agent image under the test tags (built once; reused across sessions)."""
    missing = [t for t in IMAGES.values() if not image_exists(docker_client, t)]
    if missing:
        try:
            build_stand_in(docker_client, missing)
        except StackError as exc:
            pytest.fail(f"cannot build the stand-in image: {exc}", pytrace=False)
    images: Mapping[str, str] = IMAGES
    return images


@pytest.fixture
def docker_env(docker_client: Any, images: Mapping[str, str]) -> Iterator[DockerEnv]:
    env = DockerEnv(docker_client, images)
    try:
        yield env
    finally:
        env.cleanup()
