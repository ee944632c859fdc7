"""Review helpers and no silent success: `show PLANFILE`, the plan's `Head:` in a checkout, and `apply` that
refuses when no provider is configured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from .conftest import EXAMPLE, cli, commit_all, git


def _head_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("Head:")).split(None, 1)[1]


# Head ------------------------------------------------------------------------------------------------------


def test_head_is_the_commit_in_a_clean_checkout(repo: Path) -> None:
    done = cli("plan", "org", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert _head_line(done.stdout) == git(repo, "rev-parse", "HEAD")


def test_head_is_dirty_when_the_org_differs_from_the_commit(repo: Path) -> None:
    commit = git(repo, "rev-parse", "HEAD")
    team = repo / "org/teams/frontend-team.yaml"
    team.write_text(team.read_text().replace("peerMentions: true", "peerMentions: false"))
    assert _head_line(cli("plan", "org", cwd=repo).stdout) == f"{commit}+dirty"
    git(repo, "checkout", "-q", "--", "org")
    (repo / "org/workers/new.yaml").write_text(  # untracked, but read: dirty as well
        "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: new\nspec:\n  model: qwen3.6-plus\n")
    assert _head_line(cli("plan", cwd=repo / "org").stdout) == f"{commit}+dirty"


def test_changes_outside_the_org_do_not_make_it_dirty(repo: Path) -> None:
    (repo / "README.md").write_text("not part of the org\n")
    (repo / "org/notes.txt").write_text("not YAML, never read\n")
    assert _head_line(cli("plan", "org", cwd=repo).stdout) == git(repo, "rev-parse", "HEAD")


def test_outside_git_head_is_the_content_digest(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "org")
    assert _head_line(cli("plan", "org", cwd=tmp_path).stdout).startswith("dir:")


def test_markdown_shows_the_commit_too(repo: Path) -> None:
    assert git(repo, "rev-parse", "HEAD") in cli("plan", "org", "--format", "markdown", cwd=repo).stdout


# show ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_show_renders_a_saved_plan_as_plan_printed_it(repo: Path, fmt: str) -> None:
    team = repo / "org/teams/frontend-team.yaml"
    team.write_text(team.read_text().replace("peerMentions: true", "peerMentions: false"))
    planned = cli("plan", "org", "--base", "main", "--format", fmt, "--out", "plan.json", "--color", "never",
                  cwd=repo)
    assert planned.returncode == 0, planned.stderr
    shown = cli("show", "plan.json", "--format", fmt, "--color", "never", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == planned.stdout
    assert "peerMentions true → false" in shown.stdout
    if fmt == "json":
        assert shown.stdout == (repo / "plan.json").read_text()


def test_show_of_something_else_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    done = cli("show", "notes.json", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("hiclaw-gitops: notes.json: not a saved plan") and done.stderr.count("\n") == 1
    assert cli("show", "missing.json", cwd=tmp_path).returncode == 1


# apply with no provider -----------------------------------------------------------------------------------


def test_apply_without_a_provider_refuses_and_records_nothing(tmp_path: Path) -> None:
    # The reproduction: it printed the plan, "Apply complete … verified", exited 0 and recorded state, so the
    # next plan was empty although nothing existed anywhere.
    shutil.copytree(EXAMPLE, tmp_path / "org")
    done = cli("apply", "org", "--auto-approve", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no provider is configured" in done.stderr
    assert "nothing was changed or recorded" in done.stderr
    assert not (tmp_path / ".hiclaw-state").exists()
    again = cli("plan", "org", "--detailed-exitcode", cwd=tmp_path)
    assert again.returncode == 2 and "Plan: " in again.stdout  # still everything to create


def test_apply_of_a_saved_plan_without_a_provider_refuses(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "org")
    assert cli("plan", "org", "--out", "plan.json", cwd=tmp_path).returncode == 0
    done = cli("apply", "plan.json", "--path", "org", "--auto-approve", cwd=tmp_path)
    assert done.returncode == 1 and "no provider is configured" in done.stderr
    assert not (tmp_path / ".hiclaw-state").exists()


def test_a_plan_saved_in_a_checkout_applies_then_goes_stale_on_the_next_commit(repo: Path, tmp_path: Path) -> None:
    settings = tmp_path / "memory.yaml"
    settings.write_text(yaml.safe_dump({"runtime": {"backend": "memory"}, "state_dir": str(tmp_path / "state")}))
    planned = cli("plan", "org", "--settings", str(settings), "--out", "plan.json", "--format", "json", cwd=repo)
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["head"] == git(repo, "rev-parse", "HEAD")
    applied = cli("apply", "plan.json", "--path", "org", "--settings", str(settings), "--format", "json", cwd=repo)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["run"]["verified"] is True
    commit_all(repo, "another commit")
    stale = cli("apply", "plan.json", "--path", "org", "--settings", str(settings), cwd=repo)
    assert stale.returncode == 1 and "the saved plan is stale" in stale.stderr
