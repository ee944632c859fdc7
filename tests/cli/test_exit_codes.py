"""Exit codes mean one thing for every command: 0 success / no changes, 1 any error (usage included), 2 changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gitops.cli import build_parser, main

from .conftest import EXAMPLE, cli

README = Path(__file__).resolve().parents[2] / "README.md"
COMMANDS = ("validate", "plan", "show", "apply", "run", "status", "history", "drift", "graph", "secrets", "schema")


def test_a_usage_error_exits_1_not_2_and_writes_nothing_to_stdout(tmp_path: Path) -> None:
    # The reproduction: a typo in --format was read by the CI recipe as "changes present" (exit 2).
    out = tmp_path / "plan.md"
    with out.open("w") as fh:
        done = cli("plan", str(EXAMPLE), "--format", "markdwon", "--detailed-exitcode", cwd=tmp_path)
        fh.write(done.stdout)
    assert done.returncode == 1
    assert out.read_text() == ""
    assert "invalid choice: 'markdwon'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [
    [],
    ["no-such-command"],
    ["validate", "--no-such-option"],
    ["apply", "--concurrency", "many"],
    ["secrets"],
    ["graph", "--view", "everything"],
])
def test_every_usage_error_exits_1(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        if main(argv) == 1:  # no command at all: help on stderr, exit 1
            raise SystemExit(1)
    assert exc.value.code == 1
    assert capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0_and_shows_the_exit_code_table(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes (the same for every command):" in out
    assert re.search(r"^  0  success; no changes$", out, re.M)
    assert re.search(r"^  1  error of any kind: invalid input, usage errors", out, re.M)
    assert re.search(r"^  2  changes present \(plan --detailed-exitcode\) or drift found", out, re.M)


def test_the_readme_has_the_same_table() -> None:
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\d)` \| (.+?) \|$", text, re.M)
    assert [code for code, _ in rows[:3]] == ["0", "1", "2"]
    meanings = dict(rows)
    assert "usage errors" in meanings["1"] and "changes present" in meanings["2"] and "drift" in meanings["2"]
    top = build_parser().format_help()
    assert "exit codes (the same for every command):" in top


def test_a_bug_is_one_sentence_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def broken(path: object) -> object:
        raise RuntimeError("something inside broke")

    monkeypatch.setattr("gitops.plan.saved.load_plan", broken)
    assert main(["show", "plan.json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hiclaw-gitops: internal error: RuntimeError: something inside broke")
    assert "Traceback" not in err and err.count("\n") == 1


def test_version_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("hiclaw-gitops ")
