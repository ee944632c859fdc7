"""Wiring: from settings to backend classes, their traits and built backends — checked before anything is touched.

A provider section left out of the settings disables that provider. For the runtime, `runtime.backend` names
the backend (`docker`, `kubernetes`, `memory` or a third party's); every other provider uses the backend of
its own name. Each backend is built as `Class(BackendContext(...))`, the one construction contract.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitops.objects import ManagedObject, Provider
from gitops.providers import registry
from gitops.providers.protocol import DEFAULT_TRAITS, Backend, BackendContext, SecretReader, TypeTraits
from gitops.settings.load import REDACTOR
from gitops.settings.model import Settings

log = logging.getLogger("hiclaw_gitops.providers")


class BackendsUnavailable(Exception):
    """A configured provider has no usable backend (module missing, failed to start, or a type unserved)."""


def backend_names(settings: Settings) -> dict[Provider, str]:
    """Provider → backend name, for the providers the settings enable."""
    names: dict[Provider, str] = {}
    if settings.runtime is not None:
        names[Provider.RUNTIME] = settings.runtime.backend
    for provider, section in (
        (Provider.MATRIX, settings.matrix),
        (Provider.STORAGE, settings.storage),
        (Provider.GATEWAY, settings.gateway),
    ):
        if section is not None:
            names[provider] = provider.value
    return names


def section(settings: Settings, provider: Provider) -> Any:
    return {
        Provider.RUNTIME: settings.runtime,
        Provider.MATRIX: settings.matrix,
        Provider.STORAGE: settings.storage,
        Provider.GATEWAY: settings.gateway,
    }[provider]


@dataclass(frozen=True, slots=True)
class Traits:
    """Traits by (provider, type), as declared by the backends in use; defaults for anything undeclared."""

    table: Mapping[tuple[str, str], TypeTraits] = field(default_factory=dict)

    def of(self, obj: ManagedObject) -> TypeTraits:
        return self.table.get((obj.provider.value, obj.type), DEFAULT_TRAITS)

    def get(self, provider: str, type_: str) -> TypeTraits:
        return self.table.get((provider, type_), DEFAULT_TRAITS)

    @classmethod
    def of_backends(cls, backends: Mapping[Provider, Any]) -> Traits:
        """From built backends (or backend classes): whatever each declares in `traits`."""
        table: dict[tuple[str, str], TypeTraits] = {}
        for provider, backend in backends.items():
            for type_, traits in (getattr(backend, "traits", None) or {}).items():
                table[(Provider(provider).value, type_)] = traits
        return cls(table)


def traits_for(settings: Settings) -> Traits:
    """The traits of the backends the settings select — every provider, as an offline plan compiles them —
    read from the classes without constructing or connecting. An unavailable backend contributes none."""
    classes: dict[Provider, Any] = {}
    for provider, name in backend_names(settings.with_all_providers()).items():
        if registry.is_available(name):
            with contextlib.suppress(registry.BackendUnavailable):
                classes[provider] = registry.get_class(name)
    return Traits.of_backends(classes)


def build_backends(settings: Settings, secrets: SecretReader | None) -> dict[Provider, Backend]:
    """One backend per configured provider; BackendsUnavailable (nothing left open) when one cannot be had."""
    built: dict[Provider, Backend] = {}
    try:
        for provider, name in backend_names(settings).items():
            try:
                cls = registry.get_class(name)
            except registry.BackendUnavailable as exc:
                raise BackendsUnavailable(
                    f"provider {provider.value} is configured but its backend is not available ({exc.reason})"
                ) from None
            ctx = BackendContext(
                settings=section(settings, provider),
                secrets=secrets,
                log=logging.getLogger(f"hiclaw_gitops.backend.{provider.value}"),
                instance=settings.runtime_or_default.instance,
            )
            try:
                backend = cls(ctx)
            except Exception as exc:
                raise BackendsUnavailable(
                    f"provider {provider.value}: backend {name!r} failed to start: "
                    f"{REDACTOR.redact(f'{type(exc).__name__}: {exc}')}"
                ) from None
            built[provider] = backend
            if Provider(backend.provider) is not provider:
                raise BackendsUnavailable(f"backend {name!r} serves {backend.provider}, not {provider.value}")
    except BaseException:
        close_backends(built)
        raise
    return built


def unserved(objects: Iterable[ManagedObject], backends: Mapping[Provider, Backend]) -> list[str]:
    """Object types the compiler emits for a configured provider that its backend does not serve."""
    missing: dict[tuple[str, str], int] = {}
    for obj in objects:
        backend = backends.get(obj.provider)
        if backend is not None and backend.types and obj.type not in backend.types:
            missing[(obj.provider.value, obj.type)] = missing.get((obj.provider.value, obj.type), 0) + 1
    return [
        f"the org compiles to {n} {provider}/{type_} object(s), but the configured {provider} backend "
        f"({type(backends[Provider(provider)]).__name__}) serves only {', '.join(backends[Provider(provider)].types)}"
        for (provider, type_), n in sorted(missing.items())
    ]


def close_backends(backends: Mapping[Provider, Backend]) -> None:
    for provider, backend in backends.items():
        try:
            backend.close()
        except Exception as exc:  # closing is best effort; the pass result is already decided
            log.warning("closing the %s backend failed: %s", provider.value, REDACTOR.redact(str(exc)))
