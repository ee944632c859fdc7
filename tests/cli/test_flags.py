"""Flags that do what they say: only the options a command honours, remotes read from their commit, options
after sub-actions, settings discovery, and the settings file never read as an org document."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import yaml

from gitops.apply.secrets import KEY_ENV, SecretStore
from gitops.cli import build_parser, main

from .conftest import EXAMPLE, cli, commit_all, git

# The common options each command offers — and therefore honours.
OFFERED = {
    "validate": {"--settings", "--repo", "--branch", "--path", "--color"},
    "plan": {"--settings", "--repo", "--branch", "--path", "--color", "--state-dir"},
    "graph": {"--settings", "--repo", "--branch", "--path", "--color"},
    "show": {"--color"},
    "apply": {"--settings", "--path", "--state-dir", "--color"},
    "drift": {"--settings", "--path", "--state-dir", "--color"},
    "run": {"--settings", "--repo", "--branch", "--path", "--state-dir", "--status-branch", "--color"},
    "status": {"--settings", "--repo", "--branch", "--state-dir", "--status-branch", "--color"},
    "history": {"--settings", "--repo", "--branch", "--state-dir", "--status-branch", "--color"},
    "secrets": {"--settings", "--state-dir"},
    "schema": set(),
}
COMMON = {"--settings", "--repo", "--branch", "--path", "--state-dir", "--status-branch", "--color"}
INVALID_WORKER = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: broken\nspec:\n  model: 42\n"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(OFFERED))
def test_each_command_offers_only_the_common_options_it_honours(command: str) -> None:
    parser = _subparsers(build_parser())[command]
    flags = {s for a in parser._actions for s in a.option_strings} & COMMON
    assert flags == OFFERED[command]


@pytest.mark.parametrize(("command", "flag"), [
    ("validate", "--state-dir"), ("graph", "--status-branch"), ("status", "--path"), ("secrets", "--repo"),
    ("show", "--settings"), ("apply", "--repo"), ("drift", "--branch"),
])
def test_an_option_a_command_does_not_honour_is_a_usage_error(command: str, flag: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, "list", flag, "x"] if command == "secrets" else [command, flag, "x"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 1
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


# Remotes --------------------------------------------------------------------------------------------------


def test_validate_repo_that_does_not_exist_fails_instead_of_checking_the_current_directory(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "here")  # a valid org in the working directory must not be checked
    done = cli("validate", "--repo", str(tmp_path / "nonexistent.git"), cwd=tmp_path / "here")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no repository at" in done.stderr


@pytest.fixture
def remote(repo: Path) -> Path:
    """The org repository with a second branch `feature` that adds a Worker; checked out: main."""
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "org/workers/zoe.yaml").write_text(
        "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: zoe\nspec:\n  model: qwen3.6-plus\n")
    commit_all(repo, "zoe")
    git(repo, "checkout", "-q", "main")
    return repo


@pytest.mark.parametrize("command", ["validate", "plan", "graph"])
def test_repo_reads_the_remote_commit_not_the_working_directory(command: str, remote: Path, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "bad.yaml").write_text(INVALID_WORKER)  # what the current directory holds is never read
    done = cli(command, "--repo", str(remote), "--branch", "feature", "--path", "org", cwd=here)
    assert done.returncode == 0, done.stderr
    assert "bad.yaml" not in done.stdout + done.stderr
    if command == "plan":
        assert "+ Worker/zoe: created" in done.stdout
        head = git(remote, "rev-parse", "feature")
        assert f"Head:      {head}" in done.stdout
    if command == "graph":
        assert "zoe" in done.stdout


def test_plan_repo_against_another_branch_of_the_remote(remote: Path, tmp_path: Path) -> None:
    done = cli("plan", "--repo", str(remote), "--branch", "feature", "--path", "org", "--base", "main",
               "--detailed-exitcode", "--format", "json", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    plan = json.loads(done.stdout)
    assert plan["compared_against"] == "commit" and plan["base"] == git(remote, "rev-parse", "main")
    assert {"ref": "Worker/zoe", "status": "created", "details": []} in plan["summaries"]
    assert {s["ref"] for s in plan["summaries"] if s["status"] != "affected"} == {"Worker/zoe"}


def test_an_invalid_remote_commit_is_reported_with_its_paths(remote: Path, tmp_path: Path) -> None:
    git(remote, "checkout", "-q", "feature")
    (remote / "org/workers/broken.yaml").write_text(INVALID_WORKER)
    commit_all(remote, "broken")
    git(remote, "checkout", "-q", "main")
    done = cli("validate", "--repo", str(remote), "--branch", "feature", "--path", "org", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("org/workers/broken.yaml:6:10: error[S303]")


def test_branch_without_a_repository_is_an_error(tmp_path: Path) -> None:
    done = cli("validate", "--branch", "main", cwd=tmp_path)
    assert done.returncode == 1
    assert "--branch reads a remote" in done.stderr


# Options after sub-actions -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["secrets", "list", "--state-dir", "{state}"],
    ["secrets", "--state-dir", "{state}", "list"],
    ["secrets", "list", "--settings", "{settings}"],
    ["secrets", "--settings", "{settings}", "list"],
    ["secrets", "--settings", "{settings}", "list", "--state-dir", "{state}"],
])
def test_secrets_options_before_or_after_the_action(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    store = SecretStore(state)
    store.get_or_create("matrix/alice/password")
    store.close()
    settings = tmp_path / "s.yaml"
    settings.write_text(yaml.safe_dump({"state_dir": str(state)}))
    assert main([a.format(state=state, settings=settings) for a in argv]) == 0
    assert capsys.readouterr().out == "matrix/alice/password\n"


# Settings discovery ---------------------------------------------------------------------------------------


def _compared(done_stdout: str) -> str:
    return str(json.loads(done_stdout)["compared_against"])


@pytest.fixture
def three_settings(tmp_path: Path) -> dict[str, Path]:
    """Three settings files that plan tells apart: a backend that does not exist (in the current directory), no
    provider (named by the environment: the empty baseline), a memory runtime (by flag: live state)."""
    org = tmp_path / "org"
    shutil.copytree(EXAMPLE, org)
    (tmp_path / "cwd").mkdir()
    files = {"cwd": tmp_path / "cwd" / "hiclaw-gitops.yaml", "env": tmp_path / "env.yaml",
             "flag": tmp_path / "flag.yaml"}
    files["cwd"].write_text(yaml.safe_dump({"runtime": {"backend": "from-the-cwd-file"},
                                            "state_dir": str(tmp_path / "a")}))
    files["env"].write_text(yaml.safe_dump({"state_dir": str(tmp_path / "b")}))
    files["flag"].write_text(yaml.safe_dump({"runtime": {"backend": "memory"}, "state_dir": str(tmp_path / "c")}))
    return files


def test_settings_discovery_order(three_settings: dict[str, Path], tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    org = str(tmp_path / "org")
    done = cli("plan", org, "--format", "json", cwd=cwd)  # ./hiclaw-gitops.yaml is read
    assert done.returncode == 1 and "provider runtime is configured but its backend is not available" in done.stderr
    env = {"HICLAW_GITOPS_SETTINGS": str(three_settings["env"])}  # wins over the current directory's
    assert _compared(cli("plan", org, "--format", "json", cwd=cwd, env=env).stdout) == "empty"
    done = cli("plan", org, "--format", "json", "--settings", str(three_settings["flag"]), cwd=cwd, env=env)
    assert _compared(done.stdout) == "live"  # --settings wins over both


def test_a_settings_variable_naming_no_file_is_one_sentence(tmp_path: Path) -> None:
    done = cli("validate", str(EXAMPLE), cwd=tmp_path, env={"HICLAW_GITOPS_SETTINGS": str(tmp_path / "nope.yaml")})
    assert done.returncode == 1
    missing = tmp_path / "nope.yaml"
    assert done.stderr == f"hiclaw-gitops: $HICLAW_GITOPS_SETTINGS names {missing}, which does not exist\n"


# Never an org document ------------------------------------------------------------------------------------


def test_a_settings_file_at_the_org_root_is_not_an_org_document(tmp_path: Path) -> None:
    # The reproduction: docs/ci.md suggests committing the settings beside the org; it was read as a document.
    org = tmp_path / "org"
    shutil.copytree(EXAMPLE, org)
    (org / "hiclaw-gitops.yaml").write_text(yaml.safe_dump({"prune": {"enabled": True}}))
    (org / ".hiclawignore").write_text("drafts/\n")
    for argv in (["validate"], ["validate", "."], ["plan"], ["graph"]):
        done = cli(*argv, cwd=org)
        assert done.returncode == 0, (argv, done.stderr)
        assert "K201" not in done.stdout + done.stderr
    # the same name at the org root is left out even when the command runs from elsewhere
    done = cli("validate", str(org), cwd=tmp_path)
    assert done.returncode == 0 and "hiclaw-gitops.yaml" not in done.stdout


def test_a_settings_file_given_by_flag_inside_the_org_is_not_an_org_document(tmp_path: Path) -> None:
    org = tmp_path / "org"
    shutil.copytree(EXAMPLE, org)
    (org / "ops").mkdir()
    (org / "ops/settings.yaml").write_text(yaml.safe_dump({"runtime": {"backend": "memory"},
                                                           "state_dir": str(tmp_path / "state")}))
    assert cli("validate", "--settings", "ops/settings.yaml", cwd=org).returncode == 0
    # The reproduction: `drift --settings settings.yaml` parsed the settings as an org document.
    done = cli("drift", "--settings", "ops/settings.yaml", cwd=org)
    assert done.returncode == 2, done.stderr  # a fresh memory runtime: everything drifted
    assert "K201" not in done.stderr and "ops/settings.yaml" not in done.stdout


def test_the_state_directory_inside_the_org_is_not_read(tmp_path: Path) -> None:
    org = tmp_path / "org"
    shutil.copytree(EXAMPLE, org)
    status = org / ".hiclaw-state/status/worker"
    status.mkdir(parents=True)
    (status / "alice.yaml").write_text("kind: Worker\nname: alice\nphase: Ready\n")  # a status file, no apiVersion
    assert cli("plan", "--state-dir", str(org / ".hiclaw-state"), cwd=org).returncode == 0
    (org / "hiclaw-gitops.yaml").write_text(yaml.safe_dump({"state_dir": ".hiclaw-state"}))
    done = cli("validate", cwd=org)
    assert done.returncode == 0, done.stdout


# validate FILE ---------------------------------------------------------------------------------------------


def test_validate_files_checks_them_in_the_context_of_their_org(repo: Path) -> None:
    (repo / "org/workers/broken.yaml").write_text(INVALID_WORKER)
    (repo / "org/humans/bob.yaml").write_text(
        "apiVersion: hiclaw.io/v1beta1\nkind: Human\nmetadata:\n  name: bob\nspec:\n  displayName: Bob\n"
        "  permissionLevel: 2\n  accessibleTeams: [frontend-team]\n")
    # bob.yaml names a Team declared in another file: valid as part of its org, and the other file's
    # problem is not bob's
    done = cli("validate", "--path", "org", "org/humans/bob.yaml", cwd=repo)
    assert done.returncode == 0, done.stdout
    assert "No problems found." in done.stdout
    assert "1 more problem(s) in other files" in done.stderr
    done = cli("validate", "--path", "org", "org/workers/broken.yaml", "org/humans/bob.yaml", cwd=repo)
    assert done.returncode == 1
    assert done.stdout.startswith("org/workers/broken.yaml:6:10: error[S303]")
    done = cli("validate", "workers/broken.yaml", cwd=repo / "org")
    assert done.returncode == 1 and "org/workers/broken.yaml:6:10" in done.stdout


def test_validate_a_file_outside_the_org_folder_is_an_error(repo: Path, tmp_path: Path) -> None:
    stray = tmp_path / "stray.yaml"
    stray.write_text(INVALID_WORKER)
    done = cli("validate", "--path", "org", str(stray), cwd=repo)
    assert done.returncode == 1
    assert "is not inside the org folder org" in done.stderr
    assert cli("validate", "org/workers/none.yaml", cwd=repo).returncode == 1


def test_validate_several_folders(repo: Path, tmp_path: Path) -> None:
    other = repo / "other"
    shutil.copytree(EXAMPLE, other)
    (other / "workers/broken.yaml").write_text(INVALID_WORKER)
    done = cli("validate", "org", "other", "--format", "github", cwd=repo)
    assert done.returncode == 1
    assert done.stdout.startswith("::error file=other/workers/broken.yaml,line=6")


def test_an_unreachable_remote_is_reported_once(tmp_path: Path) -> None:
    done = cli("graph", "--repo", str(tmp_path / "gone.git"), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("no repository at") == 1
    assert done.stderr.startswith("error[G601]: no repository at")
