"""`hiclaw-gitops secrets`: read generated credentials from the secret store (for an operator), and move them from
the file store into Kubernetes Secrets when an installation goes to several replicas."""

from __future__ import annotations

import argparse
import sys

from gitops.apply.secrets import SecretError, SecretStore
from gitops.apply.stores import describe_store, open_existing_secret_store, open_secret_store
from gitops.commands._common import add_command, common_options, load_settings
from gitops.settings.model import Settings

OPTIONS = ("settings", "state_dir")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "secrets", OPTIONS,
        help="show generated credentials (agent passwords, storage secrets, gateway keys)",
        description="Read the secret store the settings name (`secret_store.backend`): secrets.db in the state "
        "directory (set HICLAW_GITOPS_SECRET_KEY if it is encrypted), or the Kubernetes Secrets of `backend: "
        "kubernetes` (through KUBECONFIG). `list` prints names only; `get NAME` prints one value, for a local "
        "operator; `migrate` copies the file store into the Kubernetes one. Options go before or after the action.",
    )
    actions = p.add_subparsers(dest="secrets_action", metavar="ACTION", required=True)
    after = [common_options(*OPTIONS, suppress=True)]  # the same options after the action
    get = actions.add_parser("get", parents=after, help="print one secret's value",
                             description="Print the value of NAME.")
    get.add_argument("name", metavar="NAME", help="e.g. matrix/alice/password")
    actions.add_parser("list", parents=after, help="print the names of stored secrets (never values)",
                       description="Print the name of every stored secret, one a line.")
    actions.add_parser(
        "migrate", parents=after, help="copy the file store's credentials into the Kubernetes secret store",
        description="Copy every credential of secrets.db in the state directory into the store the settings name "
        "(`secret_store.backend: kubernetes`), so that switching to it issues nothing anew: run it once before the "
        "first pass with the new settings. A name the Kubernetes store already holds with the same value is "
        "skipped; one it holds with another value is named and left alone (exit 1). Prints counts and names, "
        "never values.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops.providers.errors import PermanentError, TransientError

    settings = load_settings(args)
    if args.secrets_action == "migrate":
        return migrate(settings)
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


def migrate(settings: Settings) -> int:
    """Copy the file store into the Kubernetes store; 1 when a name there holds another value (or it fails)."""
    from gitops.providers.errors import PermanentError, TransientError

    if settings.secret_store.backend != "kubernetes":
        print("hiclaw-gitops: nothing to migrate to: set secret_store.backend: kubernetes in the settings first",
              file=sys.stderr)
        return 1
    if not SecretStore.exists(settings.state_dir):
        print(f"hiclaw-gitops: no secret store in {settings.state_dir} to migrate from", file=sys.stderr)
        return 1
    copied, present, different = 0, 0, []
    try:
        source = SecretStore(settings.state_dir)
    except SecretError as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    try:
        target = open_secret_store(settings)
        try:
            for name in source.names():
                value, there = source.get(name), target.peek(name)
                if there is None:
                    target.put(name, value)
                    copied += 1
                elif there == value:
                    present += 1
                else:
                    different.append(name)
        finally:
            target.close()
    except SecretError as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    except (TransientError, PermanentError) as exc:
        print(f"hiclaw-gitops: cannot write {describe_store(settings)}: {exc} ({copied} copied before)",
              file=sys.stderr)
        return 1
    finally:
        source.close()
    print(f"{copied} copied, {present} already there, {len(different)} different (left alone) "
          f"into {describe_store(settings)}")
    for name in different:
        print(f"hiclaw-gitops: {name}: the Kubernetes store holds another value; decide which one the agent uses "
              "and delete the other", file=sys.stderr)
    return 1 if different else 0
