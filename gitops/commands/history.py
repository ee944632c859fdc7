"""`hiclaw-gitops history`: the runs the reconciler recorded, newest first, from the status commits."""

from __future__ import annotations

import argparse
import json
import sys

from gitops.commands._common import add_command, load_settings
from gitops.commands.status import NO_STATUS, OPTIONS, fail, status_reader, table
from gitops.settings.load import SecretError
from gitops.source.git import GitSourceError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "history", OPTIONS,
        help="list the reconciler's runs (one status commit each), newest first",
        description="Walk the status commits: which org commit each run processed, its result and phase counts. "
        "With no status written yet, says so and exits 0, like `status`.",
    )
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show at most N runs (default: 20)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.add_argument("--offline", action="store_true",
                   help="read the daemon's cache in the state directory instead of fetching")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    try:
        with status_reader(settings, args.offline) as store:
            entries = store.history(limit=max(1, args.limit))
    except (GitSourceError, SecretError) as exc:
        return fail([exc.diagnostic], args.color)
    if args.format == "json":
        sys.stdout.write(json.dumps([e.to_dict() for e in entries], indent=2) + "\n")
        return 0
    if not entries:
        sys.stdout.write(NO_STATUS + "\n")
        return 0
    rows = [["TIME", "RESULT", "COMMIT", "STATUS COMMIT", "PHASES", "ERRORS", "WARNINGS"]]
    for e in entries:
        phases = ", ".join(f"{n} {p}" for p, n in sorted(e.phases.items())) or "-"
        rows.append([e.time, e.result, e.reconciled_commit[:12], e.status_commit[:12], phases, str(e.errors),
                     str(e.warnings)])
    sys.stdout.write(table(rows))
    return 0
