"""Optional dependencies: which extra of `hiclaw-gitops` brings what, and a clear message when one is missing.

The core (validate, plan, show, graph, the views, the git source, status and history) needs only its own small
set of packages. Backends and the daemon bring theirs as extras (pyproject.toml):

    docker, kubernetes, matrix, storage, gateway   one per backend
    daemon                                         `run`: metrics and the --watch mode
    all                                            everything (the daemon with every backend)

Nothing here imports an optional package: availability is checked with `importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

# extra -> the top-level modules it provides (what must be importable for it to count as installed)
MODULES: dict[str, tuple[str, ...]] = {
    "docker": ("docker",),
    "kubernetes": ("kubernetes",),
    "matrix": ("nio", "httpx"),
    "storage": ("minio",),
    "gateway": ("httpx",),
    "daemon": ("prometheus_client", "watchfiles"),
}

# built-in backend name -> the extra it needs (the memory backend and third parties' need none of ours)
BACKEND_EXTRA = {"docker": "docker", "kubernetes": "kubernetes", "matrix": "matrix", "storage": "storage",
                 "gateway": "gateway"}


class MissingExtra(Exception):
    """An optional part of the product is used but its packages are not installed; the message says what to
    install."""

    def __init__(self, extra: str, what: str, missing: Iterable[str]) -> None:
        names = ", ".join(sorted(missing))
        super().__init__(f"{what} needs the `{extra}` extra, which is not installed (missing: {names}): "
                         f"pip install 'hiclaw-gitops[{extra}]'")
        self.extra = extra


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    out = []
    for module in MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(module)
    return out


def require(extra: str, what: str) -> None:
    """Raise MissingExtra unless every module of `extra` is importable."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(extra, what, absent)


def require_backends(names: Iterable[tuple[str, str]]) -> None:
    """For each (provider, backend name) in use, the extra its built-in backend needs."""
    for provider, name in names:
        extra = BACKEND_EXTRA.get(name)
        if extra is not None:
            require(extra, f"the {provider} provider (backend {name!r})")
