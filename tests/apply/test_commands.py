"""`apply`, `drift` and `secrets` on the command line (runtime provider: the in-memory backend)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from gitops import cli
from gitops.apply.secrets import KEY_ENV, SecretStore
from gitops.apply.state import StateStore
from gitops.objects import Provider
from gitops.pipeline import reconcile
from gitops.providers.wiring import build_backends, close_backends
from gitops.settings.model import RuntimeSettings, Settings
from gitops.source.files import DirectorySource

EXAMPLE = Path(__file__).resolve().parents[2] / "example-org"


@pytest.fixture
def org(tmp_path: Path) -> Path:
    target = tmp_path / "org"
    shutil.copytree(EXAMPLE, target)
    return target


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings with the runtime provider on the memory backend (fresh and empty in every command)."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    settings = Settings(runtime=RuntimeSettings(backend="memory"), state_dir=str(tmp_path / "state"))
    for module in ("apply", "drift", "secrets"):
        monkeypatch.setattr(f"gitops.commands.{module}.load_settings", lambda args: settings)
    return tmp_path / "state"


def test_apply_directory_json(org: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["apply", str(org), "--auto-approve", "--format", "json", "--concurrency", "4"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["phase"] == "applied" and out["run"]["ok"] and out["run"]["verified"]
    assert out["run"]["counts"]["created"] == 12  # one container per agent of the example org
    assert {s["key"].split("/")[1] for s in out["run"]["created"]} == {"container"}


def test_apply_text_shows_the_plan_then_the_change_set(org: Path, state: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["apply", str(org), "--auto-approve"]) == 0
    out = capsys.readouterr().out
    assert "Plan: 12 to create, 0 to update, 0 to delete." in out
    assert "+ runtime/container/hiclaw-manager: created" in out
    assert out.rstrip().endswith("Apply complete: 12 created, 0 configured, 0 deleted, 0 unchanged; verified.")


def test_apply_without_approval_off_a_terminal_changes_nothing(org: Path, state: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["apply", str(org)]) == 1
    assert "pass --auto-approve" in capsys.readouterr().err
    assert StateStore(state).inventory() == {}


def test_apply_reports_a_configured_provider_without_backend(org: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(runtime=RuntimeSettings(backend="podman-someday"), state_dir=str(tmp_path / "s"))
    monkeypatch.setattr("gitops.commands.apply.load_settings", lambda args: settings)
    assert cli.main(["apply", str(org), "--auto-approve"]) == 1
    err = capsys.readouterr().err
    assert "provider runtime is configured but its backend is not available" in err


def test_apply_a_saved_plan_and_refuse_it_once_stale(org: Path, state: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(runtime=RuntimeSettings(backend="memory"), state_dir=str(state))
    store, secrets = StateStore(state), SecretStore(state)
    backends = build_backends(settings, secrets)
    preview = reconcile(DirectorySource(org), settings, store=store, secrets=secrets, backends=backends,
                        dry_run=True)
    close_backends(backends)
    store.close()
    secrets.close()
    assert preview.plan is not None and preview.plan.compared_against == "live"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(preview.plan.to_dict()))

    assert cli.main(["apply", str(plan_file), "--path", str(org), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["counts"]["created"] == 12

    manager = org / "manager.yaml"
    manager.write_text(manager.read_text() + "\n# a new commit\n")
    assert cli.main(["apply", str(plan_file), "--path", str(org)]) == 1
    assert "the saved plan is stale" in capsys.readouterr().err


def test_secrets_list_and_get(org: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["secrets", "list"]) == 1  # nothing applied yet: no store
    assert "no secret store" in capsys.readouterr().err
    store = SecretStore(state)
    value = store.get_or_create("gateway/worker-fe-dev/key")
    store.close()
    assert cli.main(["secrets", "list"]) == 0
    assert capsys.readouterr().out == "gateway/worker-fe-dev/key\n"
    assert cli.main(["secrets", "get", "gateway/worker-fe-dev/key"]) == 0
    assert capsys.readouterr().out == value + "\n"
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert cli.main(["secrets", "get", "matrix/nobody/password"]) == 1
    assert "no secret named" in capsys.readouterr().err


def test_drift_reports_with_exit_2_and_heals(org: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every command starts a fresh in-memory runtime, so live state is always empty: that is drift.
    assert cli.main(["drift", str(org), "--format", "json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["phase"] == "planned" and report["plan"]["counts"]["create"] == 12
    assert cli.main(["drift", str(org), "--heal", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["ok"]


def test_drift_needs_a_provider(org: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("gitops.commands.drift.load_settings", lambda args: Settings())
    assert cli.main(["drift", str(org)]) == 1
    assert "configure at least one provider" in capsys.readouterr().err


def test_memory_backend_from_settings_serves_the_runtime() -> None:
    built = build_backends(Settings(runtime=RuntimeSettings(backend="memory")), None)
    assert built[Provider.RUNTIME].provider is Provider.RUNTIME
