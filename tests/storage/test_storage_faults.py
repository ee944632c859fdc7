"""Bad answers and a store that goes away: every failure is named by its request, bounded, and never carries a key.

The store going away is the real SeaweedFS, stopped; answers no real store gives (not XML, a 503 that never
ends) come from an httpx transport handed to the IAM client — the injection point every HTTP backend has."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from s3site import start

from backends.storage import StorageBackend, StorageError
from backends.storage_iam import IAM
from gitops.objects import ManagedObject, Provider
from gitops.providers.errors import PermanentError, TransientError
from gitops.providers.protocol import BackendContext, Scope
from gitops.settings.model import StorageSettings

SECRET = "sk" + secrets.token_hex(16)


def iam_answering(status: int, body: bytes) -> tuple[IAM, list[int]]:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, content=body)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return IAM(client, "http://127.0.0.1:1", "adminkey", SECRET, "us-east-1", attempts=3, sleep=lambda _: None), calls


def test_an_answer_that_is_not_xml_is_named() -> None:
    iam, _ = iam_answering(200, b"<html>surprise")
    with pytest.raises(PermanentError) as caught:
        iam.users()
    assert str(caught.value) == "IAM ListUsers: the answer is not XML (14 bytes)"


def test_a_503_that_never_ends_is_bounded_and_named_without_the_key() -> None:
    iam, calls = iam_answering(503, b"<Error><Code>ServiceUnavailable</Code></Error>")
    with pytest.raises(TransientError) as caught:
        iam.put_policy("alice", "worker-alice", [])
    assert len(calls) == 3
    message = str(caught.value)
    assert message.startswith("IAM PutUserPolicy worker-alice for alice: HTTP 503")
    clean = SECRET not in message  # a bool: a failing assertion must not print the key
    assert clean


def test_a_refused_request_is_permanent_and_named() -> None:
    iam, calls = iam_answering(403, b"<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(PermanentError) as caught:
        iam.create_user("alice")
    assert len(calls) == 1 and str(caught.value).startswith("IAM CreateUser alice: HTTP 403")


def test_a_store_that_went_away_is_transient_and_named(tmp_path: Path) -> None:
    store = start(tmp_path)
    settings = StorageSettings(endpoint=store.endpoint, access_key_file=str(store.access_key_file),
                               secret_key_file=str(store.secret_key_file), identity="aws-iam")
    backend = StorageBackend(BackendContext(settings=settings), sleep=lambda _: None)
    store.stop()
    try:
        with pytest.raises(TransientError) as caught:
            backend.observe(Scope({"bucket": frozenset({"hiclaw-storage"})}))
        assert str(caught.value).startswith("S3 HeadBucket hiclaw-storage: ")
        with pytest.raises(TransientError) as caught:
            backend.apply(ManagedObject(Provider.STORAGE, "user", "alice", {
                "access_key": "alice", "secret_key": "secret://storage/alice/secret-key", "policy": "worker-alice",
                "statements": []}, "Worker/alice"), "create", None, lambda spec: {**spec, "secret_key": SECRET})
        clean = SECRET not in str(caught.value)
        assert str(caught.value).startswith("IAM ") and clean
    finally:
        backend.close()


def test_missing_settings_are_named_at_construction_or_first_use(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"storage.endpoint is not set"):
        StorageBackend(BackendContext(settings=StorageSettings()))
    backend = StorageBackend(BackendContext(settings=StorageSettings(endpoint="127.0.0.1:1")))
    with pytest.raises(StorageError, match=r"storage: no access key \(set storage.access_key_env"):
        backend.observe(Scope({"bucket": frozenset({"b"})}))
