"""`kill -9` of a real `hiclaw-gitops apply` at several points, then a new pass: the same end state, no duplicates.

The reconciler runs as its own process against the real engine and is killed with SIGKILL once k of the
agents' containers exist — the journal, the inventory and the engine are left exactly as the kill found
them. The next `apply` must converge to one container per agent, one network, an inventory that lists
each container once, and a third pass must have nothing to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerharness import IMAGES, INSTANCE, NETWORK, SESSION

from deploy import localstack
from gitops.apply.state import StateStore

AGENTS = 6
WORKER = """apiVersion: hiclaw.io/v1beta1
kind: Worker
metadata:
  name: agent-{i}-{session}
spec:
  model: qwen3.6-plus
  runtime: {runtime}
"""


@pytest.fixture
def site(docker_client: Any, images: Any, tmp_path: Path) -> Iterator[Path]:
    org = tmp_path / "org"
    org.mkdir()
    for i in range(AGENTS):
        runtime = ("openclaw", "copaw", "hermes")[i % 3]
        (org / f"agent-{i}.yaml").write_text(WORKER.format(i=i, session=SESSION, runtime=runtime))
    settings = {
        "state_dir": str(tmp_path / "state"),
        "runtime": {"backend": "docker", "instance": INSTANCE, "network": NETWORK, "images": IMAGES,
                    "concurrency": 1},
    }
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(settings))
    try:
        yield tmp_path
    finally:
        localstack.remove_instance(INSTANCE, NETWORK)


def apply(site: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gitops", "apply", str(site / "org"), "--settings", str(site / "settings.yaml"),
         "--auto-approve", "--format", "json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def ours(client: Any) -> list[dict[str, Any]]:
    return list(client.api.containers(all=True, filters={"label": [f"hiclaw.io/managed-by={INSTANCE}"]}))


@pytest.mark.parametrize("kill_after", [0, 2, 5])
def test_killed_apply_then_a_new_pass_converges_without_duplicates(
    site: Path, docker_client: Any, kill_after: int
) -> None:
    proc = apply(site)
    deadline = time.monotonic() + 60
    while len(ours(docker_client)) < kill_after or (kill_after == 0 and not (site / "state/state.db").exists()):
        assert proc.poll() is None, f"apply ended before the kill point: {proc.communicate()}"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its pipes
    assert proc.returncode == -signal.SIGKILL
    assert len(ours(docker_client)) <= AGENTS

    resumed = apply(site)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    names = sorted(c["Names"][0].lstrip("/") for c in ours(docker_client))
    assert names == [f"hiclaw-worker-agent-{i}-{SESSION}" for i in range(AGENTS)]
    assert all(c["State"] == "running" for c in ours(docker_client))
    assert len(docker_client.networks.list(names=[NETWORK])) == 1
    store = StateStore(site / "state")
    try:
        assert sorted(store.inventory()) == [f"runtime/container/{n}" for n in names]
    finally:
        store.close()

    again = apply(site)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    result = json.loads(out)
    assert result["phase"] == "applied" and not result["plan"]["changes"], result["plan"]["counts"]
    assert result["run"]["counts"]["unchanged"] == AGENTS, result["run"]["counts"]
