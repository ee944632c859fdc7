"""`hiclaw-gitops status`: what the reconciler last did, per resource, read back from the status branch."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from gitops import KINDS
from gitops.commands._common import add_command, load_settings, report
from gitops.commands._common import fail as fail_message
from gitops.diagnostics import Diagnostic, counts, diag, render_text
from gitops.settings.load import SecretError
from gitops.settings.model import Settings
from gitops.source.git import GitAuth, GitSource, GitSourceError
from gitops.status.model import ResourceStatus, StatusSnapshot
from gitops.status.store import DirectoryStatusStore, GitStatusStore

NO_STATUS = "No status has been written yet."
OPTIONS = ("settings", "repo", "branch", "state_dir", "status_branch", "color")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "status", OPTIONS,
        help="show the status the reconciler wrote back (per resource)",
        description=(
            "Read the newest status commit (status branch, or status.path on the org branch) and show the last "
            "run, its diagnostics, and every resource's phase, conditions and diagnostics. SELECTOR filters: a "
            "kind (worker), or kind/name (worker/alice); a kind/name with no status is an error (exit 1). With "
            "no status written yet, says so and exits 0, like `history`."
        ),
    )
    p.add_argument("selector", nargs="?", metavar="SELECTOR", help="kind or kind/name to show")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.add_argument("--offline", action="store_true",
                   help="read the daemon's cache in the state directory instead of fetching")
    p.add_argument("--watch-dir", action="store_true",
                   help="read the status a `run --watch` daemon keeps in the state directory")
    p.set_defaults(func=run)


def fail(diagnostics: Sequence[Diagnostic], color: bool) -> int:
    report(list(diagnostics), color=color)
    return 1


@contextlib.contextmanager
def status_reader(settings: Settings, offline: bool) -> Iterator[GitStatusStore]:
    """A status store for reading. Online, it fetches into a cache of its own (the daemon's is the daemon's)."""
    if not offline and not settings.source.url:
        raise GitSourceError(diag("G601", "no repository configured: status is read from the org repository",
                                  hint="pass --repo, or set source.url in the settings"))
    state_dir = Path(settings.state_dir)
    cache = state_dir / ("git" if offline else "git-read")
    if offline and not (cache / "HEAD").is_file():
        raise GitSourceError(Diagnostic("G601", f"no git cache in {state_dir} to read offline",
                                        hint="run without --offline, or point --state-dir at the daemon's"))
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "git-read.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # readers take turns on their shared cache
        auth = GitAuth() if offline else GitAuth.from_settings(settings.source)
        source = GitSource(settings.source.url or str(cache), settings.source.branch, cache, auth=auth,
                           timeout=settings.source.timeout, known_hosts=settings.source.ssh_known_hosts,
                           readonly=offline)
        store = GitStatusStore(source, settings.status)
        if not offline:
            store.fetch()
        yield store
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    kind, name = parse_selector(args.selector)
    if args.selector and kind is None:
        return fail_message(f"unknown kind in {args.selector!r}: expected one of {', '.join(KINDS)} "
                            "(optionally /NAME)")
    try:
        if args.watch_dir:
            snapshot = DirectoryStatusStore(Path(settings.state_dir) / "status").read()
        else:
            with status_reader(settings, args.offline) as store:
                snapshot = store.read()
    except (GitSourceError, SecretError) as exc:
        return fail([exc.diagnostic], args.color)
    phases = snapshot.phases()
    selected = select(snapshot, kind, name)
    if args.format == "json":
        sys.stdout.write(to_json(selected, phases))
    else:
        sys.stdout.write(to_table(selected, whole=not args.selector))
    if name and not selected.resources:
        why = "no status has been written yet" if snapshot.summary is None else "the last run does not name it"
        return fail_message(f"no status for {kind}/{name}: {why}")
    return 0


def parse_selector(selector: str | None) -> tuple[str | None, str]:
    """`worker/alice` → ("Worker", "alice"); an unknown kind → (None, "")."""
    if not selector:
        return None, ""
    kind, _, name = selector.partition("/")
    canonical = next((k for k in KINDS if k.lower() == kind.lower()), None)
    return canonical, name


def select(snapshot: StatusSnapshot, kind: str | None, name: str = "") -> StatusSnapshot:
    if kind is None:
        return snapshot
    kept = {k: r for k, r in snapshot.resources.items() if r.kind == kind and (not name or r.name == name)}
    return StatusSnapshot(snapshot.summary, kept)


def to_json(snapshot: StatusSnapshot, phases: dict[str, int] | None = None) -> str:
    """The summary (with the phase counts of the whole org) and the selected resources."""
    body = {
        "summary": snapshot.summary.to_dict(phases if phases is not None else snapshot.phases())
        if snapshot.summary else None,
        "resources": [r.to_dict() for r in snapshot.sorted_resources()],
    }
    return json.dumps(body, indent=2, sort_keys=False) + "\n"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


def to_table(snapshot: StatusSnapshot, whole: bool = True) -> str:
    """The last run, its diagnostics, a row per resource, then each resource's conditions and diagnostics."""
    s = snapshot.summary
    if s is None:
        return NO_STATUS + "\n"
    errors, warnings = counts(s.diagnostics)
    out = f"Last run: {s.result} for {s.commit[:12]} at {s.time} ({errors} errors, {warnings} warnings)\n"
    if s.message:
        out += f"{s.message}\n"
    if s.last_good_commit and s.last_good_commit != s.commit:
        out += f"Last valid commit: {s.last_good_commit[:12]}\n"
    if s.force_push:
        out += f"Force-push: {str(s.force_push.get('previous', ''))[:12]} -> {str(s.force_push.get('new', ''))[:12]}\n"
    resources = snapshot.sorted_resources()
    files = {r.file for r in snapshot.resources.values() if r.file}
    loose = [d for d in s.diagnostics if d.file not in files]
    if whole and loose:
        out += "\nDiagnostics:\n" + _indent(render_text(loose).rsplit("\n", 2)[0] + "\n")
    out += "\n"
    rows = [["KIND", "NAME", "PHASE", "OBSERVED", "FAILURES", "MESSAGE"]]
    for r in resources:
        message = r.last_error or next((c.message for c in r.conditions if c.status != "True" and c.message), "")
        rows.append([r.kind, r.name, r.phase, r.observed_commit[:12] or "-", str(r.failures),
                     message.splitlines()[0] if message else ""])
    if len(rows) == 1:
        return out + "No resources.\n"
    out += table(rows)
    for r in resources:
        out += "\n" + details(r, [d for d in s.diagnostics if r.file and d.file == r.file])
    return out


def details(r: ResourceStatus, diagnostics: Sequence[Diagnostic]) -> str:
    """One resource: its conditions (type, status, reason, message), last error and diagnostics."""
    head = f"{r.kind}/{r.name}" + (f" ({r.file})" if r.file else "") + f": {r.phase}\n"
    lines = [f"{c.type}={c.status} {c.reason}" + (f": {c.message}" if c.message else "") for c in r.conditions]
    if r.last_error and not any(r.last_error in line for line in lines):
        lines.append(f"last error: {r.last_error}")
    body = "".join(f"  {line}\n" for line in lines)
    if diagnostics:
        body += _indent(render_text(diagnostics).rsplit("\n", 2)[0] + "\n")
    return head + body


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
