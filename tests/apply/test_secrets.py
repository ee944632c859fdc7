"""The secret store: generation by name shape, file mode, encryption, and no value ever leaking."""

from __future__ import annotations

import importlib.util
import json
import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from backends.memory import MemoryBackend
from gitops.apply.result import Status
from gitops.apply.secrets import KEY_ENV, SecretError, SecretMissing, SecretStore
from gitops.apply.state import StateStore
from gitops.objects import secret_ref
from gitops.providers.protocol import PermanentError

from .helpers import backends, converge, obj, table


@pytest.fixture(autouse=True)
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_values_are_generated_on_first_use_by_name_shape(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    password = store.get_or_create("matrix/alice/password")
    assert len(password) == 32 and int(password, 16) >= 0
    assert len(store.get_or_create("storage/alice/secret-key")) == 48
    assert len(store.get_or_create("gateway/worker-alice/key")) == 64
    human = store.get_or_create("human/carol/password")
    assert len(human) == 24 and all(c.isalnum() or c in "-_" for c in human)
    assert store.get_or_create("matrix/alice/password") == password  # stable once generated
    assert store.names() == ["gateway/worker-alice/key", "human/carol/password", "matrix/alice/password",
                             "storage/alice/secret-key"]
    store.close()
    assert SecretStore(tmp_path).get("matrix/alice/password") == password  # persisted


def test_tokens_are_never_generated_but_can_be_put(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    with pytest.raises(SecretMissing, match="an output of the object that produces it"):
        store.get_or_create("matrix/alice/token")
    with pytest.raises(SecretMissing, match="no secret named"):
        store.get("matrix/alice/token")
    store.put("matrix/alice/token", "syt_abc_123")
    assert store.resolve({"env": {"T": secret_ref("matrix/alice/token")}}) == {"env": {"T": "syt_abc_123"}}
    with pytest.raises(SecretMissing, match="has no generator"):
        store.get_or_create("something/else")


def test_resolve_replaces_references_everywhere_inside_strings(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    spec = {
        "env": {"URL": "https://user:" + secret_ref("matrix/a/password") + "@host/", "PLAIN": "x"},
        "list": [secret_ref("gateway/c/key"), 3, None, {"deep": secret_ref("gateway/c/key")}],
        "n": 1,
    }
    out = store.resolve(spec)
    password, key = store.get("matrix/a/password"), store.get("gateway/c/key")
    assert out == {"env": {"URL": f"https://user:{password}@host/", "PLAIN": "x"},
                   "list": [key, 3, None, {"deep": key}], "n": 1}
    assert spec["n"] == 1 and "secret://" in spec["env"]["URL"]  # type: ignore[index]  # input untouched


def test_the_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "state")
    store.get_or_create("matrix/a/password")
    mode = stat.S_IMODE((tmp_path / "state" / "secrets.db").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) & 0o077 == 0


def test_values_never_appear_in_repr_or_errors(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, key="correct horse")
    value = store.get_or_create("matrix/a/password")
    assert value not in repr(store)
    try:
        store.get("nope")
    except SecretError as exc:
        assert value not in str(exc)


# Both AES libraries write one format; each installed one is tested (PyCryptodome always is: minio needs it).
LIBRARIES = [lib for lib, module in (("pycryptodome", "Crypto"), ("cryptography", "cryptography"))
             if importlib.util.find_spec(module) is not None]


@pytest.mark.parametrize("library", LIBRARIES)
def test_encryption_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library: str) -> None:
    real = importlib.util.find_spec
    if library == "pycryptodome":  # force the fallback even where cryptography is installed
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "cryptography" else real(name, *a))
    monkeypatch.setenv(KEY_ENV, "a passphrase from the environment")
    store = SecretStore(tmp_path)
    assert store.encrypted
    value = store.get_or_create("storage/a/secret-key")
    store.put("matrix/a/token", "syt_token_value")
    store.close()
    raw = (tmp_path / "secrets.db").read_bytes()
    assert value.encode() not in raw and b"syt_token_value" not in raw
    reopened = SecretStore(tmp_path)
    assert reopened.get("storage/a/secret-key") == value
    assert reopened.get("matrix/a/token") == "syt_token_value"
    reopened.close()
    with pytest.raises(SecretError, match="does not match"):
        SecretStore(tmp_path, key="the wrong passphrase")
    with pytest.raises(SecretError, match="is encrypted: set HICLAW_GITOPS_SECRET_KEY"):
        SecretStore(tmp_path, key="")


def test_values_stored_before_a_key_was_set_are_encrypted_when_it_is(tmp_path: Path) -> None:
    plain = SecretStore(tmp_path)
    value = plain.get_or_create("gateway/a/key")
    plain.close()
    SecretStore(tmp_path, key="k1").close()
    db = sqlite3.connect(tmp_path / "secrets.db")
    assert db.execute("SELECT nonce IS NOT NULL FROM secrets").fetchall() == [(1,)]
    db.close()
    assert SecretStore(tmp_path, key="k1").get("gateway/a/key") == value


def test_a_key_without_any_aes_library_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("cryptography", "Crypto") else real(name, *a))
    with pytest.raises(SecretError, match="install the `cryptography` package"):
        SecretStore(tmp_path, key="something")


def test_secrets_never_reach_plan_result_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = SecretStore(tmp_path / "state")
    store = StateStore(tmp_path / "state")
    runtime = MemoryBackend("runtime")
    container = obj("runtime/container/alice", {"env": {"HICLAW_WORKER_PASSWORD": secret_ref("matrix/alice/password"),
                                                        "GATEWAY_KEY": secret_ref("gateway/worker-alice/key")}})
    failing = obj("runtime/container/bob", {"env": {"KEY": secret_ref("gateway/worker-bob/key")}})
    bob_key = secrets.get_or_create("gateway/worker-bob/key")

    def leak(op: str, key: str) -> BaseException | None:  # a careless backend quoting a credential in an error
        return PermanentError(f"auth failed with key {bob_key}") if key == failing.key and op == "apply" else None

    runtime.faults = leak
    plan, result = converge(table(container, failing), backends(runtime=runtime), store, secrets)
    password = secrets.get("matrix/alice/password")
    gateway_key = secrets.get("gateway/worker-alice/key")
    assert runtime.objects[container.key].resolved["env"]["HICLAW_WORKER_PASSWORD"] == password  # really applied
    texts = [json.dumps(plan.to_dict()), json.dumps(result.to_dict()), caplog.text, repr(result)]
    for value in (password, gateway_key, bob_key):
        for text in texts:
            assert value not in text
    assert result.step(failing.key).status is Status.FAILED  # type: ignore[union-attr]
    assert result.step(failing.key).message == "auth failed with key ***"  # type: ignore[union-attr]
    journal = " ".join(e.message for e in store.journal_entries())
    assert bob_key not in journal
    store.close()
