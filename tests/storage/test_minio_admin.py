"""`minio-admin` identities through the minio SDK's MinioAdmin, against the contract fake of MinIO's admin API
(tests/storage/minio_fake.py — a fake, not MinIO). With HICLAW_GITOPS_LIVE_SETTINGS naming a settings file whose
`storage` section points at a real MinIO, the same tests also run against it, marked `live` (`-m live`).
Secrets are compared as booleans, never printed."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from minio_fake import FakeMinioAdmin

from backends.storage import StorageBackend
from gitops.compile.storage import policy_statements
from gitops.objects import ManagedObject, Provider
from gitops.providers.errors import PermanentError, TransientError
from gitops.providers.protocol import BackendContext, Outcome, Scope
from gitops.settings.model import StorageSettings

LIVE_ENV = "HICLAW_GITOPS_LIVE_SETTINGS"
BUCKET = "hiclaw-storage"


@dataclass
class Admin:
    backend: StorageBackend
    fake: FakeMinioAdmin | None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "admin" in metafunc.fixturenames:
        kinds: list[object] = ["fake"]
        if os.environ.get(LIVE_ENV):
            kinds.append(pytest.param("live", marks=pytest.mark.live))
        metafunc.parametrize("admin_kind", kinds)


@pytest.fixture
def admin(admin_kind: str, tmp_path: Any) -> Iterator[Admin]:
    if admin_kind == "live":
        from gitops.settings.load import load_settings

        loaded, problems = load_settings(os.environ[LIVE_ENV])
        assert loaded is not None and loaded.storage is not None, f"{LIVE_ENV}: {len(problems)} problem(s)"
        backend = StorageBackend(BackendContext(settings=loaded.storage), sleep=lambda _: None)
        yield Admin(backend, None)
        backend.close()
        return
    access, secret = "minioadmin" + secrets.token_hex(3), secrets.token_hex(20)
    (tmp_path / "ak").write_text(access)
    (tmp_path / "sk").write_text(secret)
    fake = FakeMinioAdmin(access, secret)
    settings = StorageSettings(endpoint=fake.endpoint, identity="minio-admin", access_key_file=str(tmp_path / "ak"),
                               secret_key_file=str(tmp_path / "sk"))
    backend = StorageBackend(BackendContext(settings=settings), sleep=lambda _: None)
    try:
        yield Admin(backend, fake)
    finally:
        backend.close()
        fake.close()


def user(rt: str, prefixes: tuple[str, ...] = ("shared/",)) -> ManagedObject:
    spec = {"access_key": rt.replace("-", "X"), "secret_key": f"secret://storage/{rt}/secret-key",
            "policy": f"worker-{rt}", "statements": policy_statements(BUCKET, [f"agents/{rt}/", *prefixes])}
    return ManagedObject(Provider.STORAGE, "user", rt, spec, f"Worker/{rt}")


def resolver(value: str) -> Any:
    return lambda spec: {**spec, "secret_key": value}


def observed(admin: Admin, rt: str) -> dict[str, Any] | None:
    seen = admin.backend.observe(Scope({"user": frozenset({rt})}, exact=True)).get(f"storage/user/{rt}")
    return None if seen is None else dict(seen.spec)


def test_a_user_is_created_with_its_secret_and_exactly_its_policy(admin: Admin) -> None:
    obj, secret = user("fe-dev", ("shared/", "teams/web/")), secrets.token_hex(24)
    assert admin.backend.apply(obj, "create", None, resolver(secret)).outcome is Outcome.CREATED
    seen = observed(admin, "fe-dev")
    assert seen == {k: v for k, v in obj.spec.items() if k != "secret_key"}
    if admin.fake is not None:
        stored = admin.fake.users["feXdev"]
        same = stored["secretKey"] == secret  # a bool: a failing assertion must not print the key
        assert same and stored["policies"] == ["worker-fe-dev"]
        assert admin.fake.policies["worker-fe-dev"]["Statement"] == obj.spec["statements"]


def test_applying_again_rotates_the_secret_and_keeps_one_policy(admin: Admin) -> None:
    obj = user("alice")
    admin.backend.apply(obj, "create", None, resolver(secrets.token_hex(24)))
    rotated = secrets.token_hex(24)
    assert admin.backend.apply(obj, "update", None, resolver(rotated)).outcome is Outcome.CONFIGURED
    assert observed(admin, "alice") == {k: v for k, v in obj.spec.items() if k != "secret_key"}
    if admin.fake is not None:
        same = admin.fake.users["alice"]["secretKey"] == rotated
        assert same
        assert admin.fake.users["alice"]["policies"] == ["worker-alice"]


def test_a_changed_policy_is_rewritten(admin: Admin) -> None:
    admin.backend.apply(user("bob"), "create", None, resolver(secrets.token_hex(24)))
    wider = user("bob", ("shared/", "teams/data/"))
    admin.backend.apply(wider, "update", None, resolver(secrets.token_hex(24)))
    seen = observed(admin, "bob")
    assert seen is not None and seen["statements"] == wider.spec["statements"]


def test_delete_removes_user_and_policy_and_is_idempotent(admin: Admin) -> None:
    obj = user("carol")
    admin.backend.apply(obj, "create", None, resolver(secrets.token_hex(24)))
    assert admin.backend.delete(obj) is Outcome.DELETED
    assert observed(admin, "carol") is None
    assert admin.backend.delete(obj) is Outcome.UNCHANGED
    if admin.fake is not None:
        assert "carol" not in admin.fake.users and "worker-carol" not in admin.fake.policies


def test_observe_lists_once_and_sees_only_wanted_users(admin: Admin) -> None:
    for rt in ("dana", "erin"):
        admin.backend.apply(user(rt), "create", None, resolver(secrets.token_hex(24)))
    seen = admin.backend.observe(Scope({"user": frozenset({"dana"})}, exact=True))
    assert list(seen) == ["storage/user/dana"]
    if admin.fake is not None:
        before = len(admin.fake.requests)
        admin.backend.observe(Scope({"user": frozenset({"dana", "erin"})}))
        made = admin.fake.requests[before:]
        assert made.count("GET list-users") == 1


# Faults: the fake only (a real server cannot be told to fail) --------------------------------------------


def fake_only(admin: Admin) -> FakeMinioAdmin:
    if admin.fake is None:
        pytest.skip("fault injection needs the contract fake")
    return admin.fake


def test_a_5xx_is_retried_then_succeeds(admin: Admin) -> None:
    fake = fake_only(admin)
    fake.faults = [(503, b'{"Code":"XMinioServerNotInitialized"}')] * 2
    assert admin.backend.apply(user("frank"), "create", None, resolver(secrets.token_hex(24))).outcome \
        is Outcome.CREATED


def test_a_5xx_storm_is_bounded_and_named(admin: Admin) -> None:
    fake = fake_only(admin)
    fake.faults = [(500, b"")] * 50
    secret = secrets.token_hex(24)
    with pytest.raises(TransientError) as caught:
        admin.backend.apply(user("gina"), "create", None, resolver(secret))
    assert str(caught.value).startswith("MinIO admin add-user for gina: HTTP 500")
    clean = secret not in str(caught.value)
    assert len(fake.faults) < 50 and clean


def test_an_unreadable_answer_is_named_not_a_traceback(admin: Admin) -> None:
    fake = fake_only(admin)
    fake.faults = [(200, b"this is not an encrypted admin answer at all, not even close to one")]
    with pytest.raises(PermanentError) as caught:
        admin.backend.observe(Scope({"user": frozenset({"hank"})}))
    assert str(caught.value).startswith("MinIO admin list-users:")


def test_wrong_admin_credentials_are_refused_by_name_without_the_key(admin: Admin, tmp_path: Any) -> None:
    fake = fake_only(admin)
    (tmp_path / "bad-ak").write_text("someoneelse")
    (tmp_path / "bad-sk").write_text("wrong" + secrets.token_hex(10))
    settings = StorageSettings(endpoint=fake.endpoint, identity="minio-admin",
                               access_key_file=str(tmp_path / "bad-ak"), secret_key_file=str(tmp_path / "bad-sk"))
    backend = StorageBackend(BackendContext(settings=settings), sleep=lambda _: None)
    secret = secrets.token_hex(24)
    try:
        with pytest.raises(PermanentError) as caught:
            backend.apply(user("ivan"), "create", None, resolver(secret))
    finally:
        backend.close()
    message = str(caught.value)
    assert message.startswith("MinIO admin add-user for ivan: HTTP 403 InvalidAccessKeyId")
    clean = secret not in message and "wrong" not in message
    assert clean
