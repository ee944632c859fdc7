"""`hiclaw-gitops secrets`: read generated credentials from the local secret store (for an operator)."""

from __future__ import annotations

import argparse
import sys

from gitops.apply.secrets import SecretError
from gitops.apply.stores import describe_store, open_existing_secret_store
from gitops.commands._common import add_command, common_options, load_settings

OPTIONS = ("settings", "state_dir")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "secrets", OPTIONS,
        help="show generated credentials (agent passwords, storage secrets, gateway keys)",
        description="Read the secret store the settings name (`secret_store.backend`): secrets.db in the state "
        "directory (set HICLAW_GITOPS_SECRET_KEY if it is encrypted), or the Kubernetes Secrets of `backend: "
        "kubernetes` (through KUBECONFIG). `list` prints names only; `get NAME` prints one value, for a local "
        "operator. Options go before or after the action.",
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
    from gitops.providers.errors import PermanentError, TransientError

    settings = load_settings(args)
    try:
        store = open_existing_secret_store(settings)
    except SecretError as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    if store is None:
        print(f"hiclaw-gitops: no secret store in {settings.state_dir} (nothing has been applied there yet)",
              file=sys.stderr)
        return 1
    try:
        if args.secrets_action == "list":
            for name in store.names():
                print(name)
            return 0
        value = store.get(args.name)
        print(value)
        return 0
    except SecretError as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    except (TransientError, PermanentError) as exc:  # the Kubernetes store's API calls
        print(f"hiclaw-gitops: cannot read {describe_store(settings)}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
