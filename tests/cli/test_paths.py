"""Paths in diagnostics and annotations are relative to the repository root, whatever the working directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import EXAMPLE, cli, commit_all

BOB = (
    "apiVersion: hiclaw.io/v1beta1\nkind: Human\nmetadata:\n  name: bob\nspec:\n  displayName: Bob\n"
    "  permissionLevel: 1\n  colour: red\n"
)
# `colour` is on line 8, column 3 of the file: where GitHub must put the annotation.
ANNOTATION = "::error file=org/humans/bob.yaml,line=8,col=3,title=S301 unknown-field::"


@pytest.fixture
def broken(repo: Path) -> Path:
    (repo / "org/humans/bob.yaml").write_text(BOB)
    commit_all(repo, "bob")
    return repo


@pytest.mark.parametrize("where", ["root", "org", "elsewhere"])
def test_github_annotations_name_the_repository_path(broken: Path, tmp_path: Path, where: str) -> None:
    cwd, target = {
        "root": (broken, ["org"]),
        "org": (broken / "org", []),
        "elsewhere": (tmp_path, [str(broken / "org")]),
    }[where]
    done = cli("validate", *target, "--format", "github", cwd=cwd)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0].startswith(ANNOTATION)
    assert "file=humans/" not in done.stdout


def test_the_line_is_the_line_of_the_problem(broken: Path) -> None:
    done = cli("validate", "org", "--format", "github", cwd=broken)
    line = int(done.stdout.split("line=", 1)[1].split(",", 1)[0])
    assert (broken / "org/humans/bob.yaml").read_text().splitlines()[line - 1].strip() == "colour: red"


def test_text_json_and_plan_diagnostics_use_the_same_paths(broken: Path) -> None:
    text = cli("validate", "..", cwd=broken / "org/humans")
    assert text.stdout.startswith("org/humans/bob.yaml:8:3: error[S301]: unknown field `colour`")
    as_json = cli("validate", "--format", "json", "--path", "org", cwd=broken)
    assert '"file": "org/humans/bob.yaml"' in as_json.stdout
    plan = cli("plan", cwd=broken / "org")
    assert plan.returncode == 1
    assert plan.stderr.startswith("org/humans/bob.yaml:8:3: error[S301]")


def test_a_remote_read_names_paths_under_its_path(broken: Path, tmp_path: Path) -> None:
    shutil.rmtree(broken / "org")  # the working tree is gone: only the commit can be read
    done = cli("validate", "--repo", str(broken), "--branch", "main", "--path", "org", "--format", "github",
               cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith(ANNOTATION)


def test_outside_a_repository_paths_are_relative_to_the_org(tmp_path: Path) -> None:
    org = tmp_path / "plain"
    shutil.copytree(EXAMPLE, org)
    (org / "humans/bob.yaml").write_text(BOB)
    done = cli("validate", str(org), "--format", "github", cwd=Path("/"))
    assert done.stdout.startswith("::error file=humans/bob.yaml,line=8,col=3")
    assert os.sep + "plain" not in done.stdout
