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

from gitops.commands._common import load_settings, report
from gitops.diagnostics import Diagnostic
from gitops.settings.load import SecretError
from gitops.settings.model import Settings
from gitops.source.git import GitAuth, GitSource, GitSourceError
from gitops.status.model import StatusSnapshot
from gitops.status.store import DirectoryStatusStore, GitStatusStore


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "status",
        parents=[common],
        help="show the status the reconciler wrote back (per resource)",
        description=(
            "Read the newest status commit (status branch, or status.path on the org branch) and show the last "
            "run and every resource's phase. SELECTOR filters: a kind (worker), or kind/name (worker/alice)."
        ),
    )
    p.add_argument("selector", nargs="?", help="kind or kind/name to show")
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
    try:
        if args.watch_dir:
            snapshot = DirectoryStatusStore(Path(settings.state_dir) / "status").read()
        else:
            with status_reader(settings, args.offline) as store:
                snapshot = store.read()
    except (GitSourceError, SecretError) as exc:
        return fail([exc.diagnostic], args.color)
    phases = snapshot.phases()
    snapshot = select(snapshot, args.selector)
    if args.format == "json":
        sys.stdout.write(to_json(snapshot, phases))
    else:
        sys.stdout.write(to_table(snapshot))
    return 0 if snapshot.summary is not None or args.selector else 1


def select(snapshot: StatusSnapshot, selector: str | None) -> StatusSnapshot:
    if not selector:
        return snapshot
    kind, _, name = selector.partition("/")
    kept = {
        k: r for k, r in snapshot.resources.items()
        if r.kind.lower() == kind.lower() and (not name or r.name == name)
    }
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


def to_table(snapshot: StatusSnapshot) -> str:
    s = snapshot.summary
    if s is None:
        return "No status has been written yet.\n"
    errors = sum(1 for d in s.diagnostics if d.severity.value == "error")
    warnings = len(s.diagnostics) - errors
    out = f"Last run: {s.result} for {s.commit[:12]} at {s.time} ({errors} errors, {warnings} warnings)\n"
    if s.message:
        out += f"{s.message}\n"
    if s.last_good_commit and s.last_good_commit != s.commit:
        out += f"Last valid commit: {s.last_good_commit[:12]}\n"
    if s.force_push:
        out += f"Force-push: {str(s.force_push.get('previous', ''))[:12]} -> {str(s.force_push.get('new', ''))[:12]}\n"
    out += "\n"
    rows = [["KIND", "NAME", "PHASE", "OBSERVED", "FAILURES", "MESSAGE"]]
    for r in snapshot.sorted_resources():
        message = r.last_error or next((c.message for c in r.conditions if c.status != "True" and c.message), "")
        rows.append([r.kind, r.name, r.phase, r.observed_commit[:12] or "-", str(r.failures),
                     message.splitlines()[0] if message else ""])
    if len(rows) == 1:
        return out + "No resources.\n"
    return out + table(rows)
