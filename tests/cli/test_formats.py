"""`validate --format sarif` (GitHub code scanning) and `--format gitlab` (GitLab Code Quality), with goldens.

The org is tests/bad_input/mixed-problems, committed as `org/` of a repository, so the reports carry the
repository paths the services resolve. Regenerate after an intended change with
`UPDATE_GOLDEN=1 pytest tests/cli/test_formats.py` and review the diff like code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from gitops import __version__
from gitops.cli import main
from gitops.diagnostics import CODES

from .conftest import commit_all, git

HERE = Path(__file__).resolve().parent
ORG = HERE.parent / "bad_input" / "mixed-problems"
GOLDEN = {"sarif": HERE / "golden" / "validate.sarif", "gitlab": HERE / "golden" / "validate-gitlab.json"}


@pytest.fixture
def mixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shutil.copytree(ORG, repo / "org")
    commit_all(repo, "org")
    monkeypatch.chdir(repo)
    return repo


def report(fmt: str, capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(["validate", "org", "--format", fmt]) == 1
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("fmt", sorted(GOLDEN))
def test_golden(fmt: str, mixed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "org", "--format", fmt]) == 1
    out = capsys.readouterr().out.replace(f'"version": "{__version__}"', '"version": "VERSION"')
    golden = GOLDEN[fmt]
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8"), f"{golden.name} differs; UPDATE_GOLDEN=1 regenerates it"


def test_sarif_is_a_consistent_code_scanning_log(mixed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = report("sarif", capsys)
    assert log["version"] == "2.1.0" and len(log["runs"]) == 1
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "hiclaw-gitops"
    assert len({r["id"] for r in rules}) == len(rules)
    text = capsys.readouterr()
    assert not text.err
    as_json = json.loads(_validate_json(capsys))
    assert len(run["results"]) == len(as_json["diagnostics"]) >= 5
    for result, diagnostic in zip(run["results"], as_json["diagnostics"], strict=True):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == diagnostic["code"]
        assert result["level"] == diagnostic["severity"]
        where = result["locations"][0]["physicalLocation"]
        assert where["artifactLocation"]["uri"] == diagnostic["file"]
        assert where["artifactLocation"]["uri"].startswith("org/")
        assert where["region"]["startLine"] == diagnostic["line"]
        assert where["region"]["startColumn"] == diagnostic["column"]
        assert rules[result["ruleIndex"]]["shortDescription"]["text"] == CODES[diagnostic["code"]].summary


def test_gitlab_code_quality_issues_are_located_and_unique(mixed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    issues = report("gitlab", capsys)
    as_json = json.loads(_validate_json(capsys))
    assert len(issues) == len(as_json["diagnostics"])
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    for issue, diagnostic in zip(issues, as_json["diagnostics"], strict=True):
        assert issue["location"] == {"path": diagnostic["file"], "lines": {"begin": diagnostic["line"]}}
        assert issue["severity"] == {"error": "major", "warning": "minor"}[diagnostic["severity"]]
        assert issue["check_name"].startswith(diagnostic["code"])
        assert diagnostic["message"] in issue["description"]


def test_fingerprints_survive_a_line_shift(mixed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {i["fingerprint"] for i in report("gitlab", capsys)}
    for path in (mixed / "org").rglob("*.yaml"):
        path.write_text("# a comment that moves every line\n" + path.read_text())
    after = report("gitlab", capsys)
    assert {i["fingerprint"] for i in after} == before
    assert all(i["location"]["lines"]["begin"] > 1 for i in after)


def test_a_finding_without_a_file_is_placed_on_the_org_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    (repo / "org").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    monkeypatch.chdir(repo)
    assert main(["validate", "org", "--format", "sarif"]) == 0  # an empty org is a warning
    result = json.loads(capsys.readouterr().out)["runs"][0]["results"][0]
    assert result["ruleId"] == "R416"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "org"
    assert main(["validate", "org", "--format", "gitlab"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["location"]["path"] == "org"


def test_the_default_anchor_is_the_repository_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--format", "gitlab"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["location"]["path"] == "."


def _validate_json(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["validate", "org", "--format", "json"]) == 1
    return capsys.readouterr().out
