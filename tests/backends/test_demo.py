"""`hiclaw-gitops demo` end to end on the real engine: stack up, two passes (the second `No changes.`), down.

The demo runs with this session's instance (`--instance`), so a demo someone runs on the same engine is never
touched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from dockerharness import INSTANCE

from deploy import demo, localstack

EXAMPLE_ORG = Path(__file__).resolve().parents[2] / "example-org"


@pytest.fixture
def isolated_demo(docker_client: Any) -> Any:
    # Container names are global to the engine: a demo someone left running holds the example org's names.
    label = f"hiclaw.io/managed-by={localstack.LOCAL_INSTANCE}"
    running = docker_client.api.containers(all=True, filters={"label": [label]})
    if running:
        pytest.fail(f"the demo is running on this engine ({len(running)} containers labelled {label}); "
                    "bring it down with `bash deploy/demo.sh --down`", pytrace=False)
    yield docker_client
    localstack.remove_instance(INSTANCE, localstack.network_of(INSTANCE))


def test_demo_converges_and_comes_down(isolated_demo: Any, tmp_path: Path, capsys: Any) -> None:
    state = tmp_path / "state"
    assert demo.main(["--state-dir", str(state), "--instance", INSTANCE, "--color", "never", str(EXAMPLE_ORG)]) == 0
    out = capsys.readouterr().out
    first, second = out.split("== pass 2", 1)
    planned = re.search(r"Plan: (\d+) to create, 0 to update, 0 to delete\.", first)
    assert planned is not None and int(planned.group(1)) > 0, first
    agents = int(planned.group(1))
    assert f"Apply complete: {agents} created" in first and "verified" in first
    assert "No changes." in second
    assert (state / "settings.yaml").is_file()
    running = isolated_demo.api.containers(filters={"label": [f"hiclaw.io/managed-by={INSTANCE}"]})
    # 12 agents; 17 Matrix accounts and 16 rooms; a bucket, 43 files, 12 agent areas and 12 storage users
    assert len(running) == 12 and agents == 12 + 33 + 68
    assert "Matrix:  homeserver http://127.0.0.1:" in second and "secrets get matrix/admin/password" in second

    assert demo.main(["--down", "--state-dir", str(state)]) == 0  # the instance is read from its settings
    assert isolated_demo.api.containers(all=True, filters={"label": [f"hiclaw.io/managed-by={INSTANCE}"]}) == []
    assert "removed network" in capsys.readouterr().out
