"""Bad input: every case of tests/bad_input/ yields exactly the diagnostics its expected.txt lists.

Each case is a small org repository plus `expected.txt` (`CODE file:line`, `CODE file` for whole-file
problems, `CODE` for whole-org ones; sorted by file, line, code). See tests/bad_input/README.md.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gitops.cli import main
from gitops.diagnostics import CODES, Diagnostic, Severity
from gitops.settings.load import load_settings
from gitops.source.files import DirectorySource
from gitops.source.load import load
from gitops.source.yamlparse import MAX_FILE_BYTES
from gitops.validate.check import Validation, settings_checks, validate

CORPUS = Path(__file__).parent / "bad_input"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())

Row = tuple[str, str, int]  # (code, file, line); file "" for org-wide, line 0 for whole-file


# Files git cannot keep portably are made at run time: (repo copy, a directory outside it) -> None.
def _file_too_large(repo: Path, outside: Path) -> None:
    body = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: big\nspec:\n  model: m\n"
    padding = "# " + "x" * 97 + "\n"
    count = MAX_FILE_BYTES // len(padding) + 1
    (repo / "workers" / "big.yaml").write_text(body + padding * count, encoding="utf-8")


def _package_symlink_escape(repo: Path, outside: Path) -> None:
    outside.mkdir()
    (outside / "secret.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (repo / "vendor").mkdir()
    (repo / "vendor" / "bob.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (repo / "packages").mkdir()
    (repo / "packages" / "alice.zip").symlink_to(outside / "secret.zip")
    (repo / "packages" / "bob.zip").symlink_to(Path("..") / "vendor" / "bob.zip")


def _symlink_yaml_outside(repo: Path, outside: Path) -> None:
    outside.mkdir()
    (outside / "bob.yaml").write_text(
        "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: bob\nspec:\n  model: m\n", encoding="utf-8"
    )
    (repo / "workers" / "bob.yaml").symlink_to(outside / "bob.yaml")
    (repo / "shared").symlink_to(outside, target_is_directory=True)


def _symlink_broken(repo: Path, outside: Path) -> None:
    (repo / "workers" / "loop.yaml").symlink_to("loop.yaml")
    (repo / "workers" / "gone.yaml").symlink_to("missing.yaml")


GENERATORS: dict[str, Callable[[Path, Path], None]] = {
    "file-too-large": _file_too_large,
    "package-symlink-escape": _package_symlink_escape,
    "symlink-yaml-outside": _symlink_yaml_outside,
    "symlink-broken": _symlink_broken,
}

# Diagnostics about a whole file or the whole org: they have no line. Every other one must have one.
UNLOCATED = {"Y104", "Y108", "Y109", "R416"}

# Values planted in secret-in-env; none may appear in any rendering.
PLANTED_SECRETS = (
    "sk-EXAMPLEonlyNotARealKey0000000000",
    "ghp_EXAMPLEonlyNotARealToken0000000000000",
    "EXAMPLE-correct-horse-battery",
    "AKIAIOSFODNN7EXAMPLE",
)


def materialise(case: str, tmp_path: Path) -> Path:
    """A private copy of the case (so run-time files never touch the corpus), with its generated files."""
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / case, repo, symlinks=True, ignore=shutil.ignore_patterns("expected.txt", "settings.yaml"))
    generate = GENERATORS.get(case)
    if generate is not None:
        generate(repo, tmp_path / "outside")
    return repo


def run(repo: Path, strict: bool = False, case: str = "") -> Validation:
    """Validate as `validate` does: with the settings the case carries (`settings.yaml`), if any."""
    source = DirectorySource(repo)
    settings_file = CORPUS / case / "settings.yaml" if case else None
    checks: dict[str, Any] = {}
    if settings_file is not None and settings_file.is_file():
        settings, problems = load_settings(settings_file, env={})
        assert settings is not None, problems
        checks = dict(settings_checks(settings))
    return validate(load(source), strict=strict, escapes=source.escapes, **checks)


def cli(repo: Path, *options: str) -> int:
    return main(["validate", str(repo), "--color", "never", *options])


def parse_expected(text: str) -> list[Row]:
    rows: list[Row] = []
    for raw in text.splitlines():
        m = re.fullmatch(r"([A-Z]\d{3})(?: (\S+?)(?::(\d+))?)?", raw.strip())
        assert m, f"bad expected.txt line: {raw!r}"
        rows.append((m.group(1), m.group(2) or "", int(m.group(3) or 0)))
    return rows


def row(d: Diagnostic) -> Row:
    return (d.code, d.file, d.line)


def _order(r: Row) -> tuple[str, int, str]:
    return (r[1], r[2], r[0])


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 35


def test_generators_name_real_cases() -> None:
    assert set(GENERATORS) <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_case(case: str, tmp_path: Path) -> None:
    expected = parse_expected((CORPUS / case / "expected.txt").read_text(encoding="utf-8"))
    assert expected == sorted(expected, key=_order), f"{case}/expected.txt is not sorted by file, line, code"

    result = run(materialise(case, tmp_path), case=case)

    got = sorted((row(d) for d in result.diagnostics), key=_order)
    assert got == expected, "\n" + "\n".join(f"{d.location} {d.code} {d.message}" for d in result.diagnostics)
    for d in result.diagnostics:
        assert d.code in CODES
        assert d.message.strip(), f"{d.code} has an empty message"
        assert d.hint.strip(), f"{d.severity.value} {d.code} at {d.location} has no hint"
        if d.code not in UNLOCATED:
            assert d.line > 0 and d.column > 0, f"{d.code} {d.message!r} has no exact position"
        if d.code != "K202":  # a foreign apiVersion is a warning, a misspelt hiclaw.io one an error
            assert d.severity is CODES[d.code].severity
    assert result.ok == (not any(d.severity is Severity.ERROR for d in result.diagnostics))


def test_corpus_covers_every_validation_code() -> None:
    # The layers `validate` reports: files and YAML, envelope, schema, org rules.
    validation = {code for code in CODES if code[0] in "YKSR"}
    seen = set()
    for case in CASES:
        seen |= {r[0] for r in parse_expected((CORPUS / case / "expected.txt").read_text(encoding="utf-8"))}
    assert seen == validation, f"codes without a bad-input case: {sorted(validation - seen)}"


def test_corpus_is_untouched_by_runs() -> None:
    # Generated files and links live only in tmp copies.
    for case in GENERATORS:
        for path in (CORPUS / case).rglob("*"):
            assert not path.is_symlink(), path
            assert path.stat().st_size < MAX_FILE_BYTES, path


# --------------------------------------------------------------------------- particular promises


def test_foreign_api_version_is_an_error_with_strict(tmp_path: Path) -> None:
    repo = materialise("foreign-api-version", tmp_path)
    lenient, strict = run(repo), run(repo, strict=True)
    assert [(d.code, d.severity) for d in lenient.diagnostics] == [("K202", Severity.WARNING)]
    assert [(d.code, d.severity) for d in strict.diagnostics] == [("K202", Severity.ERROR)]
    assert lenient.ok and not strict.ok


def test_skipped_foreign_document_is_not_in_the_org(tmp_path: Path) -> None:
    result = run(materialise("foreign-api-version", tmp_path))
    assert [r.ref for r in result.org.resources()] == ["Worker/alice"]


def test_wrong_group_version_says_which_version(tmp_path: Path) -> None:
    (d,) = run(materialise("wrong-group-version", tmp_path)).diagnostics
    assert d.severity is Severity.ERROR and "hiclaw.io/v1alpha1" in d.message and "hiclaw.io/v1beta1" in d.hint


def test_lowercase_kind_suggests_the_kind(tmp_path: Path) -> None:
    hints = [d.hint for d in run(materialise("unknown-kind", tmp_path)).diagnostics]
    assert hints[0] == "did you mean `Worker`?"
    assert "Worker, Team, Human, Manager" in hints[1]


def test_unknown_fields_suggest_the_field(tmp_path: Path) -> None:
    hints = {d.path: d.hint for d in run(materialise("unknown-fields", tmp_path)).diagnostics if d.code == "S301"}
    assert hints["$.spec.modle"] == "did you mean `model`?"
    assert hints["$.spec.skils"] == "did you mean `skills`?"
    assert hints["$.spec.mcpServers[0].transprot"] == "did you mean `transport`?"
    assert hints["$.metadata.namspace"] == "did you mean `namespace`?"
    assert hints["$.spec.workers[0].skill"] == "did you mean `skills`?"


def test_team_member_in_accessible_workers_says_grant_the_team(tmp_path: Path) -> None:
    for d in run(materialise("worker-access-to-team-member", tmp_path)).diagnostics:
        assert d.code == "R406"
        assert "grant the team instead" in d.hint and "accessibleTeams: [alpha-team]" in d.hint


def test_duplicate_key_names_the_first_line(tmp_path: Path) -> None:
    (d,) = run(materialise("duplicate-key-nested", tmp_path)).diagnostics
    assert "`model`" in d.message and "line 11" in d.message and (d.line, d.column) == (13, 7)


def test_yaml_errors_have_line_and_column(tmp_path: Path) -> None:
    cases = {
        "yaml-bad-indentation": (7, 12),
        "yaml-unclosed-flow": (8, 10),
        "yaml-tab-indentation": (4, 1),
        "non-utf8-latin1": (6, 19),
        "non-utf8-utf16": (1, 1),
        "python-tag": (7, 9),
    }
    for i, (case, position) in enumerate(cases.items()):
        d = run(materialise(case, tmp_path / str(i))).diagnostics[0]
        assert (d.line, d.column) == position, case


def test_tab_indentation_hint_names_tabs(tmp_path: Path) -> None:
    (d,) = run(materialise("yaml-tab-indentation", tmp_path)).diagnostics
    assert "tab" in d.hint


def test_unclosed_flow_names_where_it_opened(tmp_path: Path) -> None:
    (d,) = run(materialise("yaml-unclosed-flow", tmp_path)).diagnostics
    assert "started on line 7" in d.message


def test_broken_file_is_reported_once_not_as_an_empty_org(tmp_path: Path) -> None:
    codes = [d.code for d in run(materialise("yaml-bad-indentation", tmp_path)).diagnostics]
    assert codes == ["Y101"]


def test_secret_values_never_appear_in_any_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = materialise("secret-in-env", tmp_path)
    result = run(repo)
    assert [d.code for d in result.diagnostics] == ["R414"] * 4
    dumped = json.dumps([d.to_dict() for d in result.diagnostics])
    for fmt in ("text", "json", "github"):
        assert cli(repo, "--format", fmt) == 0
        out = capsys.readouterr()
        for secret in PLANTED_SECRETS:
            assert secret not in out.out and secret not in out.err, (fmt, secret)
            assert secret not in dumped
        # nor any recognisable fragment of one
        assert "EXAMPLEonly" not in out.out and "horse" not in out.out


# --------------------------------------------------------------------------- exit codes through the CLI


@pytest.mark.parametrize(
    ("case", "exit_code"),
    [
        ("mixed-problems", 1),  # errors and warnings
        ("duplicate-key-top-level", 1),  # a file-level error
        ("level1-with-lists", 0),  # warnings only
        ("status-block", 0),
        ("empty-org", 0),
        ("hiclawignore", 0),  # clean
    ],
)
def test_cli_exit_code(case: str, exit_code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = materialise(case, tmp_path)
    for fmt in ("text", "json", "github"):
        assert cli(repo, "--format", fmt) == exit_code
        out = capsys.readouterr().out
        if fmt == "json":
            assert json.loads(out)["valid"] is (exit_code == 0)


def test_cli_strict_turns_foreign_documents_into_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = materialise("foreign-api-version", tmp_path)
    assert cli(repo) == 0
    assert cli(repo, "--strict") == 1
    capsys.readouterr()


def test_cli_reports_paths_relative_to_the_org(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = materialise("duplicate-resource", tmp_path)
    monkeypatch.chdir(tmp_path)
    cli(repo, "--format", "github")
    out = capsys.readouterr().out
    assert "file=workers/alice.yaml" in out and str(tmp_path) not in out
