"""The settings file: sections, overrides, secrets and precise diagnostics for bad input (SPEC §7, §9)."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

import pytest

from gitops.diagnostics import render_text
from gitops.objects import Provider
from gitops.settings import model as settings_mod
from gitops.settings.load import (
    REDACTOR,
    Overrides,
    SecretError,
    load_settings,
    redact_url,
    resolve_secret,
    settings_schema,
)

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def codes(diagnostics: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(d.code, d.line) for d in diagnostics]


def test_no_settings_means_upstream_defaults_and_no_providers() -> None:
    settings, diagnostics = load_settings(None, env={})
    assert settings is not None and diagnostics == []
    assert settings.providers == frozenset()
    assert settings.server_name == "matrix-local.hiclaw.io:8080"
    assert settings.status.branch == "hiclaw-status"


def test_a_full_file_loads_and_left_out_providers_are_disabled(tmp_path: Path) -> None:
    path = write(tmp_path, """
source:
  url: https://git.example.com/org.git
  branch: prod
  poll_interval: 15
  token_env: ORG_TOKEN
status:
  branch: org-status
runtime:
  backend: docker
  images: {copaw: registry.local/copaw:1}
matrix:
  url: http://127.0.0.1:8008
  server_name: chat.example.com
state_dir: state
""")
    settings, diagnostics = load_settings(path, env={})
    assert settings is not None, render_text(diagnostics)
    assert settings.providers == frozenset({Provider.RUNTIME, Provider.MATRIX})
    assert settings.source.poll_interval == 15.0 and settings.source.branch == "prod"
    assert settings.runtime is not None and settings.runtime.images["copaw"] == "registry.local/copaw:1"
    assert settings.runtime.images["openclaw"] == "hiclaw/worker-agent:latest"
    assert settings.state_dir == str(tmp_path / "state")  # relative to the settings file


def test_missing_endpoint_is_located_at_the_section(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  branch: main\nstorage:\n  bucket: b\ngateway: {}\n")
    settings, diagnostics = load_settings(path, env={})
    assert settings is None
    assert codes(diagnostics) == [("C501", 3), ("C501", 5)]
    assert "leave the `storage` section out" in diagnostics[0].hint


def test_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  branch: main\n  pol_interval: 10\nnotfiy: {}\n")
    settings, diagnostics = load_settings(path, env={})
    assert settings is None
    found = {(d.code, d.line, d.column, d.hint) for d in diagnostics}
    assert ("S301", 3, 3, "did you mean `poll_interval`?") in found
    assert ("S301", 4, 1, "did you mean `notify`?") in found


def test_wrong_type_is_located_at_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  depth: many\nprune:\n  enabled: 3\n")
    settings, diagnostics = load_settings(path, env={})
    assert settings is None
    assert [(d.code, d.line, d.column, d.path) for d in diagnostics] == [
        ("S303", 2, 10, "$.source.depth"),
        ("S303", 4, 12, "$.prune.enabled"),
    ]
    assert "`depth` must be an integer, not a string" in diagnostics[0].message


def test_yaml_problems_use_the_org_diagnostics(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  branch: a\n  branch: b\n")
    settings, diagnostics = load_settings(path, env={})
    assert settings is None and codes(diagnostics) == [("Y102", 3)]
    missing = load_settings(tmp_path / "absent.yaml", env={})
    assert missing[0] is None and missing[1][0].code == "C505"


def test_unreadable_and_missing_secrets_are_precise(tmp_path: Path) -> None:
    unreadable = tmp_path / "token"
    unreadable.write_text("s3cr3t-token-value")
    unreadable.chmod(0)
    path = write(tmp_path, f"""
source:
  url: https://git.example.com/org.git
  token_file: {unreadable}
  webhook_secret_env: HOOK_SECRET
matrix:
  url: http://127.0.0.1:8008
  admin_password_file: missing-password
""")
    settings, diagnostics = load_settings(path, env={}, secrets=True)
    assert settings is None
    found = {(d.code, d.line) for d in diagnostics}
    if os.geteuid() == 0:  # root reads any file: only the missing ones can fail here
        assert found == {("C503", 5), ("C502", 8)}
    else:
        assert found == {("C502", 4), ("C503", 5), ("C502", 8)}
    text = render_text(diagnostics)
    assert "HOOK_SECRET" in text and str(tmp_path / "missing-password") in text
    assert "s3cr3t" not in text
    # Without secrets=True (offline commands), secrets are not read at all.
    assert load_settings(path, env={})[0] is not None


def test_secret_sources_conflict_and_loose_permissions(tmp_path: Path) -> None:
    secret = tmp_path / "hook"
    secret.write_text("hook-secret-1234\n")
    secret.chmod(0o644)
    path = write(tmp_path, f"source:\n  webhook_secret_file: {secret}\n  token_env: T\n  token_file: {secret}\n")
    settings, diagnostics = load_settings(path, env={"T": "x"})
    assert settings is None and [d.code for d in diagnostics] == ["C504"]
    path = write(tmp_path, f"source:\n  webhook_secret_file: {secret}\n")
    settings, diagnostics = load_settings(path, env={}, secrets=True)
    assert settings is not None and [d.code for d in diagnostics] == ["C508"]


def test_resolve_secret_registers_the_value_for_redaction(tmp_path: Path) -> None:
    assert resolve_secret("MY_TOKEN", "", key="source.token", env={"MY_TOKEN": " tok-9f8e7d \n"}) == "tok-9f8e7d"
    assert REDACTOR.redact("auth tok-9f8e7d failed") == "auth *** failed"
    with pytest.raises(SecretError) as exc:
        resolve_secret("", str(tmp_path / "nope"), key="matrix.admin_password")
    assert exc.value.diagnostic.code == "C502"
    with pytest.raises(SecretError) as empty:
        resolve_secret("EMPTY", "", key="source.token", env={"EMPTY": ""})
    assert empty.value.diagnostic.code == "C503" and "is empty" in empty.value.diagnostic.message


def test_environment_overrides_with_types_and_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  poll_interval: 30\n")
    env = {
        "HICLAW_GITOPS_SOURCE_POLL_INTERVAL": "5",
        "HICLAW_GITOPS_STATUS_ENABLED": "false",
        "HICLAW_GITOPS_STATE_DIR": "/var/lib/hiclaw",
        "HICLAW_GITOPS_MATRIX_URL": "http://127.0.0.1:8008",
        "HICLAW_GITOPS_SOURCE_BRANCHH": "x",
        "HICLAW_GITOPS_SECRETS_KEY": "not a settings variable",
    }
    settings, diagnostics = load_settings(path, env=env)
    assert settings is not None, render_text(diagnostics)
    assert settings.source.poll_interval == 5.0
    assert settings.status.enabled is False
    assert settings.state_dir == "/var/lib/hiclaw"
    assert settings.matrix is not None and Provider.MATRIX in settings.providers
    assert [(d.code, d.file, d.hint) for d in diagnostics] == [
        ("C506", "$HICLAW_GITOPS_SOURCE_BRANCHH", "did you mean HICLAW_GITOPS_SOURCE_BRANCH?")
    ]


def test_a_bad_environment_value_points_at_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  depth: 1\n")
    settings, diagnostics = load_settings(path, env={"HICLAW_GITOPS_SOURCE_DEPTH": "deep"})
    assert settings is None
    assert [(d.code, d.file, d.line, d.path) for d in diagnostics] == [
        ("S303", "$HICLAW_GITOPS_SOURCE_DEPTH", 0, "$.source.depth")
    ]


def test_flags_override_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  url: a\n  branch: one\nstatus:\n  branch: s1\n")
    overrides = Overrides(repo="/srv/org.git", branch="three", path="org", state_dir="st", status_branch="s3")
    settings, _ = load_settings(path, env={"HICLAW_GITOPS_SOURCE_BRANCH": "two"}, overrides=overrides)
    assert settings is not None
    assert (settings.source.url, settings.source.branch, settings.source.path) == ("/srv/org.git", "three", "org")
    assert (settings.state_dir, settings.status.branch) == ("st", "s3")
    settings, diagnostics = load_settings(path, overrides=Overrides(branch=""), env={})
    assert settings is None and [(d.code, d.file) for d in diagnostics] == [("S306", "--branch")]


def test_credentials_in_the_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  url: https://ghp_abcdefSECRET@github.com/acme/org.git\n")
    settings, diagnostics = load_settings(path, env={})
    assert settings is None and codes(diagnostics) == [("C507", 2)]
    assert "ghp_abcdefSECRET" not in render_text(diagnostics)
    assert redact_url("https://u:p@host/x.git") == "https://***@host/x.git"


def test_every_setting_is_in_the_schema_and_documented() -> None:
    schema = settings_schema()["properties"]
    doc = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    for name, cls in settings_mod._SECTIONS.items():
        assert {f.name for f in fields(cls)} == set(schema[name]["properties"]), name
        for key in schema[name]["properties"]:
            assert re.search(rf"`{name}\.{key}`", doc), f"docs/settings.md does not document {name}.{key}"
    assert "`state_dir`" in doc


def test_the_documented_example_file_is_valid(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    example = re.search(r"<!-- example -->\n```yaml\n(.*?)```", doc, re.S)
    assert example is not None, "docs/settings.md needs an example marked <!-- example -->"
    settings, diagnostics = load_settings(write(tmp_path, example.group(1)), env={})
    assert settings is not None, render_text(diagnostics)


def test_a_misspelt_secret_store_backend_is_refused_with_the_names_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "secret_store:\n  backend: kuberentes\n")
    settings, diagnostics = load_settings(path, env={})
    assert settings is None
    (d,) = diagnostics
    assert (d.code, d.line, d.hint) == ("S304", 2, "did you mean `kubernetes`?")
    assert "allowed: file, kubernetes" in d.message
