"""`hiclaw-gitops plan` end to end: offline against a git ref or a directory, exit codes, saved plans."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gitops.cli import main
from gitops.plan.model import Plan

EXAMPLE = Path(__file__).resolve().parent.parent / "example-org"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shutil.copytree(EXAMPLE, repo / "org")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "org")
    return repo


def test_no_changes_against_the_same_commit_exits_0(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(repo / "org"), "--base", "main", "--detailed-exitcode", "--color", "never"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("No changes.")


def test_an_edit_against_the_base_branch_exits_2_with_the_change(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = repo / "org/teams/frontend-team.yaml"
    team.write_text(team.read_text().replace("peerMentions: true", "peerMentions: false"))
    out = tmp_path / "plan.json"
    code = main(["plan", str(repo / "org"), "--base", "main", "--detailed-exitcode", "--format", "json",
                 "--out", str(out)])
    assert code == 2
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    plan = Plan.from_dict(printed)
    assert plan.compared_against == "commit" and len(plan.base) == 40
    assert [(s.ref, s.details) for s in plan.summaries] == [
        ("Team/frontend-team", ("peerMentions true → false", "restarts 3 agents: fe-dev, fe-qa, fe-ui"))]
    assert plan.counts() == {"create": 0, "update": 6, "replace": 0, "delete": 0}


def test_against_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = tmp_path / "head"
    shutil.copytree(EXAMPLE, head)
    (head / "humans/lena.yaml").unlink()
    assert main(["plan", str(head), "--base", str(EXAMPLE), "--detailed-exitcode", "--color", "never"]) == 2
    out = capsys.readouterr().out
    assert "- Human/lena: deleted" in out
    assert "- matrix/user/lena" in out


def test_unknown_ref_is_an_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(repo / "org"), "--base", "no-such-branch"]) == 1
    assert "no-such-branch" in capsys.readouterr().err


def test_invalid_head_is_an_error_with_diagnostics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = tmp_path / "head"
    shutil.copytree(EXAMPLE, head)
    (head / "workers/bad.yaml").write_text("apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata: {name: x}\n")
    assert main(["plan", str(head), "--detailed-exitcode", "--color", "never"]) == 1
    err = capsys.readouterr().err
    assert "workers/bad.yaml:1:1: error[S302]: missing required field `spec`" in err


def test_with_a_provider_configured_the_plan_is_against_live_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"state_dir: {tmp_path / 'state'}\nruntime:\n  backend: memory\n")
    code = main(["plan", str(EXAMPLE), "--settings", str(settings), "--format", "json", "--detailed-exitcode"])
    assert code == 2
    plan = Plan.from_dict(json.loads(capsys.readouterr().out))
    assert plan.compared_against == "live"
    assert plan.providers["runtime"] == "enabled" and plan.providers["matrix"].startswith("disabled")
    assert {c.key.split("/")[0] for c in plan.changes} == {"runtime"}
    assert plan.counts()["create"] == 12  # one container per agent of example-org


def test_a_configured_backend_that_does_not_exist_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"state_dir: {tmp_path / 'state'}\nruntime:\n  backend: podman\n")
    assert main(["plan", str(EXAMPLE), "--settings", str(settings)]) == 1
    assert "provider runtime is configured but its backend is not available" in capsys.readouterr().err


def test_offline_plans_show_identities_and_their_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A PR plan with no `storage` section shows what a store with an identity API gets (SPEC §3.4): one user per
    agent, its secret as a reference, and its policy statement by statement — the prefix with its slash."""
    head = tmp_path / "head"
    shutil.copytree(EXAMPLE, head)
    (head / "workers/scribe.yaml").write_text(
        "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: scribe\nspec:\n  model: qwen3.6-plus\n")
    assert main(["plan", str(head), "--base", str(EXAMPLE), "--detailed-exitcode", "--color", "never"]) == 2
    out = capsys.readouterr().out
    start = out.index("+ storage/user/scribe")
    block = out[start: out.index("\n\n", start)].splitlines()
    assert '+   secret_key: "secret://storage/scribe/secret-key"' in block
    assert '+   policy: "worker-scribe"' in block
    listing = next(line for line in block if "s3:prefix" in line)
    assert '"agents/scribe/"' in listing and '"agents/scribe"' not in listing
    writes = next(line for line in block if line.startswith("+   statements[1].Resource"))
    assert '"arn:aws:s3:::hiclaw-storage/agents/scribe/*"' in writes
    assert not any("chars)" in line for line in block)  # nothing of a policy is cut
