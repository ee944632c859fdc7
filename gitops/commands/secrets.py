"""`hiclaw-gitops secrets`: read generated credentials from the local secret store (for an operator)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitops.apply.secrets import SecretError, SecretStore
from gitops.commands._common import load_settings


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "secrets",
        parents=[common],
        help="show generated credentials (agent passwords, storage secrets, gateway keys)",
        description="Read the secret store in the state directory (secrets.db; set HICLAW_GITOPS_SECRET_KEY if it "
        "is encrypted). `list` prints names only; `get NAME` prints one value, for a local operator.",
    )
    actions = p.add_subparsers(dest="secrets_action", metavar="ACTION", required=True)
    get = actions.add_parser("get", help="print one secret's value", description="Print the value of NAME.")
    get.add_argument("name", metavar="NAME", help="e.g. matrix/alice/password")
    actions.add_parser("list", help="print the names of stored secrets (never values)",
                       description="Print the name of every stored secret, one a line.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    state_dir = Path(args.state_dir or settings.state_dir)
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
