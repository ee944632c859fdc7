"""Opening the secret store the settings name (`secret_store.backend`): one place for every command and the daemon.

`file` is `secrets.db` in the state directory (gitops.apply.secrets); `kubernetes` is one Secret per credential
(backends.kubernetes_secrets), shared by every replica, imported only when selected so the core never needs the
`kubernetes` package.
"""

from __future__ import annotations

import importlib
from typing import Any

from gitops.apply.secrets import SecretError, SecretStore
from gitops.extras import MissingExtra, require
from gitops.settings.model import Settings

KUBE_STORE = "backends.kubernetes_secrets:KubeSecretStore"  # imported only when selected


def store_location(settings: Settings) -> tuple[str, str]:
    """(namespace, instance) of the Kubernetes secret store: its own settings, else the runtime's."""
    runtime = settings.runtime_or_default
    return settings.secret_store.namespace or runtime.namespace, settings.secret_store.instance or runtime.instance


def describe_store(settings: Settings) -> str:
    """Where credentials live, for messages: never a value."""
    if settings.secret_store.backend == "kubernetes":
        namespace, instance = store_location(settings)
        return f"the Kubernetes secret store (Secrets of {instance} in {namespace})"
    return f"the secret store in {settings.state_dir}"


def open_secret_store(settings: Settings) -> SecretStore:
    """The store `secret_store.backend` selects, created when it does not exist yet. SecretError says why it cannot be
    opened (an encrypted file without its key, a missing extra)."""
    if settings.secret_store.backend == "kubernetes":
        return _kube_store(settings)
    return SecretStore(settings.state_dir)


def open_existing_secret_store(settings: Settings) -> SecretStore | None:
    """The same, for readers that must not create a store: None when the file store does not exist yet. A
    Kubernetes store always exists (no Secrets is an empty store)."""
    if settings.secret_store.backend != "kubernetes" and not SecretStore.exists(settings.state_dir):
        return None
    return open_secret_store(settings)


def _kube_store(settings: Settings) -> SecretStore:
    try:
        require("kubernetes", "`secret_store.backend: kubernetes`")
    except MissingExtra as exc:
        raise SecretError(str(exc)) from None
    module, _, attr = KUBE_STORE.partition(":")
    store_class: Any = getattr(importlib.import_module(module), attr)
    namespace, instance = store_location(settings)
    store: SecretStore = store_class(namespace, instance)
    return store
