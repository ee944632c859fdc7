"""The compiled-validator cache: reused when present, rebuilt when missing or damaged, never required."""

from __future__ import annotations

import os
from pathlib import Path

import fastjsonschema
import pytest

from gitops.validate import schema

WORKER = {
    "apiVersion": "hiclaw.io/v1beta1",
    "kind": "Worker",
    "metadata": {"name": "alice"},
    "spec": {"model": "qwen3.6-plus"},
}
BAD = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker", "metadata": {"name": "alice"}, "spec": {"runtme": "x"}}


def _validator(cache: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("HICLAW_GITOPS_CACHE_DIR", str(cache))
    return schema._compiled_validator(
        schema._positive(schema._schema("Worker")) | {"$schema": "http://json-schema.org/draft-07/schema#"}
    )


def _verdicts(validate: object) -> tuple[bool, bool]:
    def ok(doc: object) -> bool:
        try:
            validate(doc)  # type: ignore[operator]
            return True
        except fastjsonschema.JsonSchemaValueException:
            return False

    return ok(WORKER), ok(BAD)


def test_written_once_then_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _verdicts(_validator(tmp_path, monkeypatch)) == (True, False)
    entries = list(tmp_path.glob("validator-*.marshal"))
    assert len(entries) == 1
    stamp = entries[0].stat().st_mtime_ns
    assert _verdicts(_validator(tmp_path, monkeypatch)) == (True, False)
    assert entries[0].stat().st_mtime_ns == stamp  # loaded, not written again


@pytest.mark.parametrize("damage", [b"", b"not marshal", b"\xe3garbage" * 10])
def test_a_damaged_entry_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes) -> None:
    _validator(tmp_path, monkeypatch)
    (entry,) = tmp_path.glob("validator-*.marshal")
    entry.write_bytes(damage)
    assert _verdicts(_validator(tmp_path, monkeypatch)) == (True, False)
    assert entry.read_bytes() != damage


def test_an_unwritable_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    assert _verdicts(_validator(blocked / "cache", monkeypatch)) == (True, False)
    assert os.listdir(tmp_path) == ["file"]
