"""The status tree's files: a snapshot rendered as YAML per resource, a summary and a README, and read back.

Layout (SPEC §6): `status/<kind>/<name>.yaml` per resource, `status/summary.yaml` for the run as a whole
and `status/README.md` as a table for people — on the status branch, or under a path on the org branch.
Every status commit message carries the trailers `Reconciled-Commit: <sha>` and `Hiclaw-Gitops-Status: true`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from gitops.diagnostics import counts, sort_key
from gitops.settings.load import REDACTOR
from gitops.source.git import RECONCILED_TRAILER, STATUS_TRAILER
from gitops.status.model import CommandRecord, ResourceStatus, RunSummary, StatusSnapshot, _first_line

RESULT_TRAILER = "Hiclaw-Gitops-Result"
SUMMARY_FILE = "summary.yaml"
COMMANDS_FILE = "commands.yaml"  # the latest chat commands (docs/chatops.md)
README_FILE = "README.md"
HEADER = "# Written by hiclaw-gitops after each run; edits are overwritten.\n"
MAX_README_DIAGNOSTICS = 50


def render(snapshot: StatusSnapshot) -> dict[str, bytes]:
    """File name (relative to the status directory) → content, for every file of the status tree."""
    files: dict[str, bytes] = {}
    for res in snapshot.resources.values():
        files[f"{res.kind.lower()}/{res.name}.yaml"] = _yaml(res.to_dict())
    if snapshot.summary is not None:
        files[SUMMARY_FILE] = _yaml(snapshot.summary.to_dict(snapshot.phases()))
    if snapshot.commands:
        files[COMMANDS_FILE] = _yaml({"commands": [c.to_dict() for c in snapshot.commands]})
    files[README_FILE] = REDACTOR.redact(render_readme(snapshot)).encode()
    return files


def _yaml(data: Mapping[str, Any]) -> bytes:
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=120)
    return (HEADER + REDACTOR.redact(text)).encode()


def render_readme(snapshot: StatusSnapshot) -> str:
    s = snapshot.summary
    lines = ["# HiClaw org status", ""]
    if s is not None:
        lines.append(f"Last run: **{s.result}** for commit `{s.commit[:12]}` at {s.time}.")
        if s.last_good_commit and s.last_good_commit != s.commit:
            lines.append(f"The last valid commit is `{s.last_good_commit[:12]}`.")
        if s.message:
            lines += ["", _md(s.message)]
        if s.force_push:
            lines += ["", f"⚠ The branch was rewritten (force-push): `{str(s.force_push.get('previous', ''))[:12]}` "
                          f"is not an ancestor of `{str(s.force_push.get('new', ''))[:12]}`."]
        if s.signature:
            who = s.signature.get("signer") or "unknown"
            state = "verified" if s.signature.get("verified") else "NOT verified"
            lines += ["", f"Signature: {state} ({s.signature.get('method') or 'unsigned'}, {who})."]
    lines += ["", "| Kind | Name | Phase | Observed commit | Failures | Message |", "|---|---|---|---|---|---|"]
    for r in snapshot.sorted_resources():
        message = r.last_error or next((c.message for c in r.conditions if c.status != "True" and c.message), "")
        observed = f"`{r.observed_commit[:12]}`" if r.observed_commit else "—"
        lines.append(
            f"| {r.kind} | {_md(r.name)} | {r.phase} | {observed} | {r.failures} | {_md(_first_line(message))} |"
        )
    if not snapshot.resources:
        lines.append("| — | — | — | — | — | no resources |")
    if s is not None and s.diagnostics:
        errors, warnings = counts(s.diagnostics)
        lines += ["", f"## Diagnostics ({errors} errors, {warnings} warnings)", ""]
        for d in sorted(s.diagnostics, key=sort_key)[:MAX_README_DIAGNOSTICS]:
            where = f"`{d.location}` " if d.location else ""
            lines.append(f"- {where}{d.severity.value}[{d.code}]: {_md(d.message)}")
        if len(s.diagnostics) > MAX_README_DIAGNOSTICS:
            lines.append(f"- … and {len(s.diagnostics) - MAX_README_DIAGNOSTICS} more (see summary.yaml)")
    return "\n".join(lines) + "\n"


def commit_message(snapshot: StatusSnapshot, subject: str = "") -> str:
    """The status commit's message; `subject` replaces the first line (a chat command's record)."""
    s = snapshot.summary
    phases = ", ".join(f"{n} {p}" for p, n in sorted(snapshot.phases().items())) or "no resources"
    commit = s.commit if s else ""
    result = s.result if s else "Unknown"
    body = f"{_first_line(subject)}\n" if subject.strip() else f"status: {result} {commit[:12]} ({phases})\n"
    if s and s.message and not subject.strip():
        body += f"\n{_first_line(s.message)}\n"
    body += f"\n{RECONCILED_TRAILER}: {commit}\n{RESULT_TRAILER}: {result}\n{STATUS_TRAILER}: true\n"
    return REDACTOR.redact(body)


def parse_tree(files: Mapping[str, bytes]) -> StatusSnapshot:
    """Read a status tree back (the inverse of render); unreadable files are skipped."""
    summary: RunSummary | None = None
    resources: dict[str, ResourceStatus] = {}
    commands: tuple[CommandRecord, ...] = ()
    for name, content in files.items():
        if not name.endswith(".yaml"):
            continue
        try:
            data = yaml.safe_load(content.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if not isinstance(data, Mapping):
            continue
        if name == SUMMARY_FILE:
            summary = RunSummary.from_dict(data)
        elif name == COMMANDS_FILE:
            listed = data.get("commands")
            commands = tuple(CommandRecord.from_dict(c) for c in listed or [] if isinstance(c, Mapping))
        elif "/" in name:
            res = ResourceStatus.from_dict(data)
            if res.kind and res.name:
                resources[res.key] = res
    return StatusSnapshot(summary, resources, commands)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
