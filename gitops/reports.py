"""Diagnostics as CI reports: SARIF 2.1.0 (GitHub code scanning) and GitLab Code Quality, beside the text,
JSON and GitHub-annotation renderings of `gitops.diagnostics`.

Paths are whatever the diagnostics carry — the commands make them relative to the repository root, which is
what both services resolve them against. A diagnostic with no file (an empty org) is placed on `anchor`
(the org root's path), because both formats want every finding located.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from gitops import __version__
from gitops.diagnostics import CODES, Diagnostic, Severity, render_github, render_json, render_text, sort_key

FORMATS = ("text", "json", "github", "sarif", "gitlab")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning"}
GITLAB_SEVERITY = {Severity.ERROR: "major", Severity.WARNING: "minor"}


def rebase(d: Diagnostic, prefix: str) -> Diagnostic:
    """A diagnostic whose file is relative to the org root, renamed relative to the repository root (the org
    root is `prefix` inside it). Files that are not org files (a settings file, `$ENV`, `--flag`) stay."""
    prefix = prefix.strip("/")
    if not prefix or not d.file or d.file.startswith(("$", "--", "/")):
        return d
    return replace(d, file=prefix if d.file == "." else f"{prefix}/{d.file}")


def rebased(diagnostics: Iterable[Diagnostic], prefix: str) -> list[Diagnostic]:
    return [rebase(d, prefix) for d in diagnostics]


def fingerprint(d: Diagnostic) -> str:
    """Stable across runs and unrelated edits: code, file, JSON path and message — not the line number."""
    text = "\0".join((d.code, d.file, d.path, d.message))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _message(d: Diagnostic) -> str:
    return d.message + (f" ({d.path})" if d.path else "") + (f". Hint: {d.hint}" if d.hint else "")


def render_sarif(diagnostics: Sequence[Diagnostic], anchor: str = ".") -> str:
    """One SARIF run: a rule per code that occurs (with the catalogue's summary), a result per diagnostic."""
    ordered = sorted(diagnostics, key=sort_key)
    codes = sorted({d.code for d in ordered})
    index = {code: i for i, code in enumerate(codes)}
    rules = [
        {
            "id": code,
            "name": CODES[code].name,
            "shortDescription": {"text": CODES[code].summary},
            "help": {"text": f"{code} {CODES[code].name}: see docs/diagnostics.md of hiclaw-gitops"},
            "defaultConfiguration": {"level": SARIF_LEVEL[CODES[code].severity]},
        }
        for code in codes
    ]
    results = []
    for d in ordered:
        region: dict[str, int] = {"startLine": d.line or 1}
        if d.column:
            region["startColumn"] = d.column
        results.append({
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": SARIF_LEVEL[d.severity],
            "message": {"text": _message(d)},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": d.file or anchor, "uriBaseId": "%SRCROOT%"},
                    "region": region,
                },
            }],
            "partialFingerprints": {"hiclawGitops/v1": fingerprint(d)},
        })
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "hiclaw-gitops", "version": __version__, "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "the repository root"}}},
            "results": results,
        }],
    }
    return json.dumps(log, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_gitlab(diagnostics: Sequence[Diagnostic], anchor: str = ".") -> str:
    """A GitLab Code Quality report: a JSON array of issues with a unique fingerprint each."""
    issues: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in sorted(diagnostics, key=sort_key):
        mark = fingerprint(d)
        while mark in seen:  # the same problem twice in one file (two documents): still one issue each
            mark = hashlib.sha256(mark.encode()).hexdigest()
        seen.add(mark)
        issues.append({
            "type": "issue",
            "check_name": f"{d.code} {d.name}",
            "description": f"{d.code}: {_message(d)}",
            "categories": ["Bug Risk"] if d.severity is Severity.ERROR else ["Style"],
            "severity": GITLAB_SEVERITY[d.severity],
            "fingerprint": mark,
            "location": {"path": d.file or anchor, "lines": {"begin": d.line or 1}},
        })
    return json.dumps(issues, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(diagnostics: Sequence[Diagnostic], fmt: str, *, color: bool = False, anchor: str = ".") -> str:
    """Render in one of FORMATS."""
    simple: dict[str, Callable[[Sequence[Diagnostic]], str]] = {"json": render_json, "github": render_github}
    if fmt == "text":
        return render_text(diagnostics, color=color)
    if fmt in simple:
        return simple[fmt](diagnostics)
    if fmt == "sarif":
        return render_sarif(diagnostics, anchor)
    if fmt == "gitlab":
        return render_gitlab(diagnostics, anchor)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
