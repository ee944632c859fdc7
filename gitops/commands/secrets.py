"""`hiclaw-gitops secrets`: read generated credentials from the local secret store (for an operator)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitops.apply.secrets import SecretError, SecretStore
from gitops.commands._common import add_command, common_options, load_settings

OPTIONS = ("settings", "state_dir")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "secrets", OPTIONS,
        help="show generated credentials (agent passwords, storage secrets, gateway keys)",
        description="Read the secret store in the state directory (secrets.db; set HICLAW_GITOPS_SECRET_KEY if it "
        "is encrypted). `list` prints names only; `get NAME` prints one value, for a local operator. Options go "
        "before or after the action.",
    )
    actions = p.add_subparsers(dest="secrets_action", metavar="ACTION", required=True)
    after = [common_options(*OPTIONS, suppress=True)]  # the same options after the action
    get = actions.add_parser("get", parents=after, help="print one secret's value",
                             description="Print the value of NAME.")
    get.add_argument("name", metavar="NAME", help="e.g. matrix/alice/password")
    actions.add_parser("list", parents=after, help="print the names of stored secrets (never values)",
                       description="Print the name of every stored secret, one a line.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    state_dir = Path(settings.state_dir)
    if not SecretStore.exists(state_dir):
        print(f"hiclaw-gitops: no secret store in {state_dir} (nothing has been applied there yet)", file=sys.stderr)
        return 1
    try:
        store = SecretStore(state_dir)
    except SecretError as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    try:
        if args.secrets_action == "list":
            for name in store.names():
                print(name)
            return 0
        try:
            value = store.get(args.name)
        except SecretError as exc:
            print(f"hiclaw-gitops: {exc}", file=sys.stderr)
            return 1
        print(value)
        return 0
    finally:
        store.close()
