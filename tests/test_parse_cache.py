"""The parse cache: reused across processes by content id, never hiding a problem."""

from __future__ import annotations

from pathlib import Path

from gitops.source.files import DirectorySource
from gitops.source.load import ParseCache, load
from gitops.validate.check import validate

WORKER = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata: {{name: {name}}}\nspec:\n  model: {model}\n"


def run(root: Path, cache_file: Path) -> tuple[list[str], ParseCache]:
    cache = ParseCache(cache_file)
    result = validate(load(DirectorySource(root), cache), cache=cache)
    cache.save()
    return [f"{d.code} {d.file}:{d.line}" for d in result.diagnostics], cache


def test_warm_run_reuses_parses_and_reports_the_same(tmp_path: Path) -> None:
    org, cache_file = tmp_path / "org", tmp_path / "cache.pickle"
    org.mkdir()
    (org / "a.yaml").write_text(WORKER.format(name="alice", model="m"))
    (org / "b.yaml").write_text(WORKER.format(name="bob", model="m") + "  runtme: copaw\n")
    cold, cache = run(org, cache_file)
    assert cold == ["S301 b.yaml:6"]
    assert cache.misses == 2 and cache.hits == 0
    warm, cache = run(org, cache_file)
    assert warm == cold  # the file with a problem is checked again, not trusted
    assert cache.hits == 2 and cache.misses == 0
    assert cache.is_clean(next(f.blob_id for f in DirectorySource(org).files() if f.path == "a.yaml"))


def test_changed_file_is_parsed_and_checked_again(tmp_path: Path) -> None:
    org, cache_file = tmp_path / "org", tmp_path / "cache.pickle"
    org.mkdir()
    (org / "a.yaml").write_text(WORKER.format(name="alice", model="m"))
    assert run(org, cache_file)[0] == []
    (org / "a.yaml").write_text(WORKER.format(name="alice", model="m") + "  runtime: copaww\n")
    problems, cache = run(org, cache_file)
    assert problems == ["S304 a.yaml:6"]
    assert cache.misses == 1


def test_damaged_cache_file_is_only_a_slower_run(tmp_path: Path) -> None:
    org, cache_file = tmp_path / "org", tmp_path / "cache.pickle"
    org.mkdir()
    (org / "a.yaml").write_text(WORKER.format(name="alice", model="m"))
    cache_file.write_bytes(b"not a pickle")
    problems, cache = run(org, cache_file)
    assert problems == [] and cache.misses == 1
