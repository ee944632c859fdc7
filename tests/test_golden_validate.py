"""Golden files for `hiclaw-gitops validate`: the text, JSON and GitHub renderings of one bad org.

The org is tests/bad_input/mixed-problems (errors and warnings from the schema, the envelope and the org
rules). Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_golden_validate.py`
and review the diff like code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gitops.cli import main

HERE = Path(__file__).parent
ORG = HERE / "bad_input" / "mixed-problems"
GOLDEN = HERE / "golden"
FORMATS = {"text": "validate-text.txt", "json": "validate-json.json", "github": "validate-github.txt"}


@pytest.fixture
def outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the org in a folder that is not inside a git repository (paths are then org-relative; inside a
    checkout they are relative to its top level, see tests/cli/test_paths.py)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    copy = tmp_path / ORG.name
    shutil.copytree(ORG, copy)
    return copy


def render(fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, org: Path) -> tuple[int, str]:
    # Run from the org's parent with a relative path, as CI does; the output names org-relative files only.
    monkeypatch.chdir(org.parent)
    code = main(["validate", org.name, "--format", fmt, "--color", "never"])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_validate_golden(fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                         outside_git: Path) -> None:
    code, out = render(fmt, capsys, monkeypatch, outside_git)
    assert code == 1
    golden = GOLDEN / FORMATS[fmt]
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(out, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert out == golden.read_text(encoding="utf-8"), f"{golden.name} differs; UPDATE_GOLDEN=1 regenerates it"


def test_output_is_machine_independent(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                       outside_git: Path) -> None:
    for fmt in FORMATS:
        _, out = render(fmt, capsys, monkeypatch, outside_git)
        assert str(outside_git) not in out and "\033[" not in out


def test_same_org_absolute_path_gives_the_same_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, outside_git: Path
) -> None:
    monkeypatch.chdir("/")
    assert main(["validate", str(outside_git), "--format", "json", "--color", "never"]) == 1
    assert capsys.readouterr().out == (GOLDEN / FORMATS["json"]).read_text(encoding="utf-8")


def test_json_golden_is_complete() -> None:
    body = json.loads((GOLDEN / FORMATS["json"]).read_text(encoding="utf-8"))
    assert body["valid"] is False and body["errors"] >= 1 and body["warnings"] >= 1
    codes = {d["code"] for d in body["diagnostics"]}
    assert len(codes) >= 4
    for d in body["diagnostics"]:
        assert set(d) == {"code", "name", "severity", "message", "file", "line", "column", "path", "hint"}
        assert d["line"] > 0 and d["hint"]


def test_github_golden_lines_are_workflow_commands() -> None:
    for line in (GOLDEN / FORMATS["github"]).read_text(encoding="utf-8").splitlines():
        assert line.startswith(("::error file=", "::warning file=")), line
        assert ",line=" in line and ",title=" in line
