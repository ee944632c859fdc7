"""The registry hands out the gateway backend by name, and the wiring builds it from the settings' section."""

from __future__ import annotations

from pathlib import Path

from backends.gateway import GatewayBackend
from gitops.objects import Provider
from gitops.providers import registry
from gitops.providers.wiring import build_backends, close_backends
from gitops.settings.model import GatewaySettings, Settings


def test_the_registry_names_the_gateway_backend() -> None:
    assert registry.get_class("gateway") is GatewayBackend


def test_the_wiring_builds_it_from_the_gateway_section(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("pw")
    settings = Settings(gateway=GatewaySettings(console_url="http://127.0.0.1:9", password_file=str(pw)))
    built = build_backends(settings, None)
    try:
        assert isinstance(built[Provider.GATEWAY], GatewayBackend)
    finally:
        close_backends(built)
