"""docs/diagnostics.md documents exactly the codes of the catalogue, with their names and severities."""

from __future__ import annotations

import re
from pathlib import Path

from gitops.diagnostics import CODES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "diagnostics.md"
GOLDEN = ROOT / "tests" / "golden"
HEADING = re.compile(r"^### ([A-Z]\d{3}) ([a-z0-9-]+) \((error|warning)\b", re.MULTILINE)


def documented() -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for code, name, severity in HEADING.findall(DOC.read_text(encoding="utf-8")):
        assert code not in found, f"{code} is documented twice"
        found[code] = (name, severity)
    return found


def test_every_code_is_documented() -> None:
    missing = sorted(set(CODES) - set(documented()))
    assert not missing, f"codes missing from docs/diagnostics.md: {missing}"


def test_every_documented_code_exists() -> None:
    unknown = sorted(set(documented()) - set(CODES))
    assert not unknown, f"docs/diagnostics.md documents codes the catalogue lacks: {unknown}"


def test_names_and_severities_match() -> None:
    for code, (name, severity) in documented().items():
        assert (name, severity) == (CODES[code].name, CODES[code].severity.value), code


def test_every_code_has_an_example_and_a_fix() -> None:
    text = DOC.read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    for section in sections:
        code = section.split()[0]
        if code not in CODES:
            continue
        assert f"[{code}]: " in section, f"{code}: no example message"
        assert "**Fix:**" in section, f"{code}: no fix"


def test_codes_are_grouped_by_layer() -> None:
    text = DOC.read_text(encoding="utf-8")
    groups = {
        "Y": "## Files and YAML",
        "K": "## Envelope",
        "S": "## Schema",
        "R": "## Org rules",
        "C": "## Settings",
        "G": "## Git source and status",
    }
    starts = {letter: text.index(title) for letter, title in groups.items()}
    ends = sorted([*starts.values(), text.index("## Output formats")])
    for code in CODES:
        at = text.index(f"### {code} ")
        assert code[0] in starts, f"{code}: a new layer of codes needs its own section in docs/diagnostics.md"
        start = starts[code[0]]
        assert start < at < min(e for e in ends if e > start), f"{code} is not under {groups[code[0]]}"


def test_format_samples_match_the_goldens() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Output formats") :]
    samples = re.findall(r"```(?:text|json)\n(.*?)```", section, flags=re.DOTALL)
    text_golden = (GOLDEN / "validate-text.txt").read_text(encoding="utf-8").splitlines()
    github_golden = (GOLDEN / "validate-github.txt").read_text(encoding="utf-8").splitlines()
    for line in samples[0].splitlines()[:-1]:  # the last line is the (shortened) count
        assert line in text_golden, line
    for line in samples[2].splitlines():
        assert line in github_golden, line
