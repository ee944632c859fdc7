"""Diagnostics: one precise, located message per problem, with a stable code, and their renderings."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Code:
    """A stable diagnostic code: its identifier, short name and default severity."""

    id: str
    name: str
    severity: Severity
    summary: str


def _codes(*rows: tuple[str, str, Severity, str]) -> dict[str, Code]:
    return {row[0]: Code(*row) for row in rows}


E, W = Severity.ERROR, Severity.WARNING

# The catalogue. docs/diagnostics.md lists every entry; tests/test_diagnostics_doc.py keeps them in step.
CODES: dict[str, Code] = _codes(
    # Files and YAML
    ("Y101", "yaml-syntax", E, "The file is not valid YAML."),
    ("Y102", "duplicate-key", E, "A mapping repeats a key; YAML parsers silently keep the last one."),
    (
        "Y103",
        "alias-expansion",
        E,
        "Anchors and aliases expand to too many nodes (an alias bomb) or refer to themselves.",
    ),
    ("Y104", "file-too-large", E, "The file is larger than the size cap."),
    ("Y105", "not-utf8", E, "The file is not UTF-8 text."),
    ("Y106", "not-a-mapping", E, "A YAML document is not a mapping (an object with apiVersion, kind, metadata, spec)."),
    ("Y107", "unsupported-tag", E, "The document uses a YAML tag that is not plain data."),
    ("Y108", "symlink-escape", E, "A symbolic link points outside the repository."),
    ("Y109", "unreadable-file", E, "The file could not be read."),
    (
        "Y110",
        "bad-scalar",
        E,
        "A value is not what its tag or form says: `!!int` on text, a date that does not exist, a 101-digit integer.",
    ),
    ("Y111", "non-string-key", E, "A mapping key is not a string (a number, boolean, null or date): keys are names."),
    ("Y112", "nesting-too-deep", E, "Mappings and lists nest more than 64 levels deep (an alias counts in full)."),
    ("Y113", "bad-ignore-pattern", E, "A line of .hiclawignore is not a valid pattern; the line is not used."),
    # Envelope
    ("K201", "missing-envelope", E, "A document lacks `apiVersion` or `kind`."),
    (
        "K202",
        "foreign-api-version",
        W,
        "A document's apiVersion is not hiclaw.io/v1beta1; it is skipped (an error with --strict).",
    ),
    ("K203", "unknown-kind", E, "A hiclaw.io/v1beta1 document has a kind other than Worker, Team, Human, Manager."),
    (
        "K204",
        "status-ignored",
        W,
        "A `status` block in the repository is ignored: status is written by the reconciler.",
    ),
    ("K205", "unknown-annotation", W, "An annotation under gitops.hiclaw.io/ is not one this reconciler understands."),
    ("K206", "bad-annotation-value", E, "A gitops.hiclaw.io/ annotation has a value it does not accept."),
    # Schema
    ("S301", "unknown-field", E, "A field is not part of the HiClaw schema for this kind."),
    ("S302", "missing-field", E, "A required field is missing."),
    ("S303", "wrong-type", E, "A field has the wrong type."),
    ("S304", "bad-enum", E, "A field's value is not one of the allowed values."),
    (
        "S305",
        "bad-name",
        E,
        "A name is not lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters.",
    ),
    ("S306", "bad-value", E, "A field's value breaks a schema constraint (pattern, range, length, format)."),
    # Org rules
    ("R401", "duplicate-resource", E, "Two documents declare the same kind and name."),
    (
        "R402",
        "duplicate-runtime-name",
        E,
        "Two agents would share one runtime name (Matrix account, storage prefix, gateway consumer).",
    ),
    ("R403", "member-shadows-worker", E, "A team member has the name of a standalone Worker."),
    ("R404", "leader-is-worker", E, "A team's leader is also listed among its workers."),
    ("R405", "unknown-team", E, "A Human's accessibleTeams names a Team that does not exist."),
    ("R406", "unknown-worker", E, "A Human's accessibleWorkers names no standalone Worker."),
    ("R407", "unknown-human", E, "A Team's admin or humanMembers names a Human that does not exist."),
    ("R408", "level3-with-teams", E, "permissionLevel 3 (worker-only) cannot have accessibleTeams."),
    ("R409", "level1-access-lists", W, "permissionLevel 1 already reaches everything; its access lists are ignored."),
    ("R410", "multiple-managers", E, "More than one Manager is declared."),
    ("R411", "bad-channel-entry", E, "A channelPolicy entry is neither @localpart:domain nor a bare name."),
    ("R412", "unknown-channel-name", W, "A bare channelPolicy name matches no agent or human of this org."),
    ("R413", "package-escape", E, "A file:// package path leaves the repository."),
    ("R414", "secret-in-env", W, "An env value looks like a secret; secrets belong in the secret store."),
    (
        "R415",
        "admin-id-mismatch",
        E,
        "A Team admin's matrixUserId is not a Matrix user ID, or differs from the Human's full Matrix ID.",
    ),
    ("R416", "empty-org", W, "The repository declares no resources."),
    (
        "R417",
        "identity-clash",
        E,
        "Two identities would share one Matrix account: a Human and an agent, or two Humans.",
    ),
    (
        "R418",
        "duplicate-member-name",
        E,
        "Two teams have a member of the same name; the name becomes the container `hiclaw-worker-<name>`.",
    ),
    (
        "R419",
        "duplicate-team-name",
        E,
        "Two Teams have the same team name (`teamName`, else the name): one Team Room, one storage prefix.",
    ),
    ("R420", "bad-expose-port", E, "An agent exposes the same port twice, or a port outside 1-65535."),
    (
        "R421",
        "member-id-mismatch",
        E,
        "A Team's humanMembers[].matrixUserId is not a Matrix user ID, or differs from the Human's Matrix ID.",
    ),
    (
        "R422",
        "access-key-too-short",
        E,
        "An agent's runtime name is shorter than the access key ids the store's identity API takes.",
    ),
    # Settings
    (
        "C501",
        "missing-endpoint",
        E,
        "A provider section is present but its endpoint is not set; leave the section out to disable the provider.",
    ),
    ("C502", "unreadable-secret-file", E, "A secret file named in the settings cannot be read or is empty."),
    (
        "C503",
        "missing-secret-env",
        E,
        "An environment variable named in the settings for a secret is not set or is empty.",
    ),
    (
        "C504",
        "conflicting-secret-sources",
        E,
        "A secret is configured both from an environment variable and from a file.",
    ),
    ("C505", "unreadable-settings", E, "The settings file cannot be read, or is not a single YAML mapping."),
    (
        "C506",
        "unknown-env-override",
        W,
        "A HICLAW_GITOPS_<SECTION>_<KEY> environment variable names no setting; it is ignored.",
    ),
    (
        "C507",
        "credentials-in-url",
        E,
        "The repository URL embeds credentials; use source.token_env or source.token_file.",
    ),
    ("C508", "secret-file-permissions", W, "A secret file can be read by other users."),
    (
        "C509",
        "unreadable-settings-path",
        E,
        "A file or directory named in the settings (key, known_hosts, allowed signers, GnuPG home) cannot be read.",
    ),
    ("C510", "duplicate-route", E, "Two gateway routes have the same name."),
    ("C511", "bad-url", E, "A URL or address in the settings cannot be parsed (a broken IPv6 host, a bad port)."),
    (
        "C512",
        "bad-env-override",
        E,
        "A HICLAW_GITOPS_<SECTION>_<KEY> list or mapping is not JSON, or nests too deeply to be read.",
    ),
    ("C513", "control-character", E, "A setting's text holds a NUL or another control character."),
    # Git source and status
    ("G601", "remote-unreachable", E, "The git remote could not be reached (path, network, DNS, timeout)."),
    ("G602", "auth-failed", E, "The git remote refused the credentials."),
    ("G603", "branch-missing", E, "The remote has no such branch."),
    (
        "G604",
        "bad-remote-response",
        E,
        "The remote answered with something that is not a git repository or a valid pack.",
    ),
    (
        "G605",
        "force-push",
        W,
        "The branch was rewritten: the previously reconciled commit is not an ancestor of the new head.",
    ),
    ("G606", "unsigned-commit", E, "Signature verification is on and the commit is not signed; it is not reconciled."),
    (
        "G607",
        "untrusted-signature",
        E,
        "The commit's signature does not verify or is not by an allowed signer; it is not reconciled.",
    ),
    (
        "G608",
        "status-push-failed",
        E,
        "The status commit could not be pushed (rejected by the server, or retries exhausted).",
    ),
    ("G609", "org-path-missing", E, "The configured org path is not a directory in the commit."),
    (
        "G610",
        "force-push-refused",
        E,
        "The branch was rewritten and source.allow_force_push is false; the new head is not reconciled.",
    ),
    ("G611", "verifier-unavailable", E, "ssh-keygen or gpg, needed to verify signatures, is missing or failed to run."),
    (
        "G612",
        "pass-crashed",
        E,
        "The reconcile pass raised an unexpected error; nothing after the failing step was done.",
    ),
)


# Diagnostics without a line by design: about a whole file (or a settings file that cannot be read as one), or
# about the whole org (no file either). Every other diagnostic of a file names a line (1-based). Diagnostics
# about an environment variable or a flag name it as their file (`$HICLAW_GITOPS_…`, `--repo`), without a line.
WHOLE_FILE = frozenset({"Y104", "Y108", "Y109", "C505"})
WHOLE_ORG = frozenset({"R416"})


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the input: where it is, what it is, and how to fix it."""

    code: str
    message: str
    file: str = ""
    line: int = 0
    column: int = 0
    path: str = ""
    hint: str = ""
    severity: Severity = Severity.ERROR

    @property
    def name(self) -> str:
        return CODES[self.code].name

    @property
    def location(self) -> str:
        if not self.file:
            return ""
        if self.line:
            return f"{self.file}:{self.line}:{self.column or 1}"
        return self.file

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["name"] = self.name
        return data


def diag(code: str, message: str, **where: object) -> Diagnostic:
    """Build a diagnostic with the catalogue's default severity (override with severity=...)."""
    severity = where.pop("severity", None) or CODES[code].severity
    return Diagnostic(code=code, message=message, severity=Severity(severity), **where)  # type: ignore[arg-type]


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def sort_key(d: Diagnostic) -> tuple[str, int, int, str, str]:
    return (d.file, d.line, d.column, d.code, d.message)


def counts(diagnostics: Sequence[Diagnostic]) -> tuple[int, int]:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    return errors, len(diagnostics) - errors


# Renderings ------------------------------------------------------------------------------------------


def render_text(diagnostics: Sequence[Diagnostic], color: bool = False) -> str:
    """Terminal form: `file:line:col: error[S301]: message` with the JSON path and a hint line."""
    red, yellow, dim, bold, reset = ("\033[31m", "\033[33m", "\033[2m", "\033[1m", "\033[0m") if color else ("",) * 5
    lines: list[str] = []
    for d in sorted(diagnostics, key=sort_key):
        sev_color = red if d.severity is Severity.ERROR else yellow
        where = f"{bold}{d.location}{reset}: " if d.location else ""
        lines.append(f"{where}{sev_color}{d.severity.value}[{d.code}]{reset}: {d.message}")
        if d.path:
            lines.append(f"  {dim}at {d.path}{reset}")
        if d.hint:
            lines.append(f"  hint: {d.hint}")
    errors, warnings = counts(diagnostics)
    if errors or warnings:
        lines.append(f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}.")
    else:
        lines.append("No problems found.")
    return "\n".join(lines) + "\n"


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    errors, warnings = counts(diagnostics)
    body = {
        "valid": errors == 0,
        "errors": errors,
        "warnings": warnings,
        "diagnostics": [d.to_dict() for d in sorted(diagnostics, key=sort_key)],
    }
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def _gh_escape(value: str, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands: one `::error file=…,line=…::` annotation per diagnostic."""
    out: list[str] = []
    for d in sorted(diagnostics, key=sort_key):
        props = []
        if d.file:
            props.append(f"file={_gh_escape(d.file, True)}")
            if d.line:
                props.append(f"line={d.line}")
                props.append(f"col={d.column or 1}")
        props.append(f"title={_gh_escape(f'{d.code} {d.name}', True)}")
        message = d.message + (f" ({d.path})" if d.path else "") + (f"\nhint: {d.hint}" if d.hint else "")
        out.append(f"::{d.severity.value} {','.join(props)}::{_gh_escape(message)}")
    return "\n".join(out) + ("\n" if out else "")


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
