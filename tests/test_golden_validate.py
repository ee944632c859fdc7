"""Golden files for `hiclaw-gitops validate`: the text, JSON and GitHub renderings of one bad org.

The org is tests/bad_input/mixed-problems (errors and warnings from the schema, the envelope and the org
rules). Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_golden_validate.py`
and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gitops.cli import main

HERE = Path(__file__).parent
ORG = HERE / "bad_input" / "mixed-problems"
GOLDEN = HERE / "golden"
FORMATS = {"text": "validate-text.txt", "json": "validate-json.json", "github": "validate-github.txt"}


def render(fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    # Run from the org's parent with a relative path, as CI does; the output names repo-relative files only.
    monkeypatch.chdir(ORG.parent)
    code = main(["validate", ORG.name, "--format", fmt, "--color", "never"])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_validate_golden(fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = render(fmt, capsys, monkeypatch)
    assert code == 1
    golden = GOLDEN / FORMATS[fmt]
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(out, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert out == golden.read_text(encoding="utf-8"), f"{golden.name} differs; UPDATE_GOLDEN=1 regenerates it"


def test_output_is_machine_independent(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for fmt in FORMATS:
        _, out = render(fmt, capsys, monkeypatch)
        assert str(HERE) not in out and "\033[" not in out


def test_same_org_absolute_path_gives_the_same_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(ORG), "--format", "json", "--color", "never"]) == 1
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
