"""The git source: single-branch fetch, reading commit trees without a checkout, and what goes wrong."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pygit2
import pytest

from gitops.source.git import Ancestry, GitAuth, GitSource, GitSourceError
from gitops.source.load import load
from gitops.validate.check import validate

from .gitutil import GitDaemon, OrgRepo, free_port, git, human, worker


def paths(source: GitSource, commit: str, root: str = "") -> dict[str, str]:
    return {f.path: f.blob_id for f in source.tree_source(commit, root).files()}


def test_head_is_one_round_trip_that_writes_nothing(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    source = GitSource(org.url, "main", tmp_path / "cache")
    refs_before = list(source.repo.references)
    objects = tmp_path / "cache" / "objects"
    files_before = sorted(p for p in objects.rglob("*") if p.is_file())
    assert source.head() == tip
    assert list(source.repo.references) == refs_before
    assert sorted(p for p in objects.rglob("*") if p.is_file()) == files_before


def test_fetches_only_the_followed_branch(org: OrgRepo, tmp_path: Path) -> None:
    org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    org.git("checkout", "-q", "-b", "other")
    org.commit("other", {"workers/bob.yaml": worker("bob")})
    org.push(branch="other")
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    assert [r for r in source.repo.references if r.startswith("refs/remotes/")] == ["refs/remotes/origin/main"]


def test_reads_yaml_from_the_commit_tree_with_gits_blob_ids(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("org", {
        "org/workers/alice.yaml": worker("alice"),
        "org/humans/bob.yml": human("bob"),
        "org/drafts/carol.yaml": worker("carol"),
        "org/notes.txt": "not yaml",
        "org/.hiclawignore": "drafts/\n",
        "elsewhere/dave.yaml": worker("dave"),
    })
    source = GitSource(f"file://{org.url}", "main", tmp_path / "cache")
    assert source.fetch() == tip
    found = paths(source, tip, "org")
    assert sorted(found) == ["humans/bob.yml", "workers/alice.yaml"]
    for rel, blob_id in found.items():
        assert blob_id == org.git("rev-parse", f"HEAD:org/{rel}")
    assert not (tmp_path / "cache" / "workers").exists()  # no working tree, ever
    result = validate(load(source.tree_source(tip, "org")))
    assert result.ok, result.diagnostics
    assert sorted(r.ref for r in result.org.resources()) == ["Human/bob", "Worker/alice"]


def test_a_missing_org_path_is_reported(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    tree = source.tree_source(tip, "no/such/dir")
    assert list(tree.files()) == []
    assert [d.code for d in tree.problems()] == ["G609"]


def test_symlinks_inside_are_followed_and_escapes_reported(org: OrgRepo, tmp_path: Path) -> None:
    org.write({"workers/alice.yaml": worker("alice"), "shared/pkg/agent.zip": "zip"})
    org.symlink("workers/alias.yaml", "alice.yaml")  # inside: read, same blob as its target
    org.symlink("workers/evil.yaml", "../../outside/secret.yaml")  # leaves the repository
    org.symlink("workers/abs.yaml", "/etc/passwd")
    org.symlink("packages", "shared/pkg")
    org.symlink("escape-dir", "../..")
    tip = org.commit("links")
    org.push()
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    tree = source.tree_source(tip)
    found = {f.path: f.blob_id for f in tree.files()}
    assert found["workers/alias.yaml"] == found["workers/alice.yaml"]
    problems = {(d.code, d.file) for d in tree.problems()}
    assert problems == {("Y108", "workers/evil.yaml"), ("Y108", "workers/abs.yaml"), ("Y108", "escape-dir")}
    assert not tree.escapes("packages/agent.zip")
    assert tree.escapes("escape-dir/x.zip")
    diagnostics = validate(load(tree)).diagnostics
    assert {d.code for d in diagnostics} >= {"Y108"}


def test_oversized_and_binary_files_are_precise_diagnostics(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("bad files", {
        "workers/alice.yaml": worker("alice"),
        "workers/huge.yaml": "# padding\n" * 120_000,
        "workers/binary.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe",
    })
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    result = validate(load(source.tree_source(tip)))
    by_file = {d.file: d.code for d in result.diagnostics}
    assert by_file == {"workers/huge.yaml": "Y104", "workers/binary.yaml": "Y105"}


def test_shallow_fetch_over_git_daemon(daemon: GitDaemon, tmp_path: Path) -> None:
    org = OrgRepo(tmp_path / "u", name="../served/org.git")
    org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    tip = org.commit_and_push("two", {"workers/bob.yaml": worker("bob")})
    source = GitSource(daemon.url("org.git"), "main", tmp_path / "cache", depth=1)
    assert source.head() == tip
    assert source.fetch() == tip
    assert source.repo.is_shallow
    assert source.commit(tip).parent_ids == []
    assert sorted(paths(source, tip)) == ["workers/alice.yaml", "workers/bob.yaml"]
    # Without the shared history a rewrite cannot be told from a fast-forward: say so, do not guess.
    assert source.ancestry("0" * 40, tip) is Ancestry.UNKNOWN


def test_force_push_is_detected_by_ancestry(org: OrgRepo, tmp_path: Path) -> None:
    first = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    second = org.commit_and_push("two", {"workers/bob.yaml": worker("bob")})
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    assert source.ancestry(first, second) is Ancestry.FAST_FORWARD
    assert source.ancestry(second, second) is Ancestry.SAME
    org.git("reset", "-q", "--hard", first)
    rewritten = org.commit("rewritten", {"workers/carol.yaml": worker("carol")})
    org.push(force=True)
    assert source.fetch() == rewritten
    assert source.ancestry(second, rewritten) is Ancestry.REWRITTEN


def test_unreachable_remotes_are_reported_not_raised_raw(tmp_path: Path) -> None:
    with pytest.raises(GitSourceError) as missing:
        GitSource(str(tmp_path / "nowhere.git"), "main", tmp_path / "c1").head()
    assert missing.value.diagnostic.code == "G601"
    with pytest.raises(GitSourceError) as closed:
        GitSource(f"git://127.0.0.1:{free_port()}/org.git", "main", tmp_path / "c2", timeout=2).head()
    assert closed.value.diagnostic.code == "G601"
    assert "127.0.0.1" in closed.value.diagnostic.message


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A TCP server on loopback that answers anything with bytes that are not git."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nthis is not git\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(srv.getsockname()[1])
    stop.set()
    thread.join(2)
    srv.close()


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_remote_answering_garbage_is_reported(garbage_server: int, tmp_path: Path, scheme: str) -> None:
    with pytest.raises(GitSourceError) as exc:
        GitSource(f"{scheme}://127.0.0.1:{garbage_server}/org.git", "main", tmp_path / "c", timeout=2).head()
    assert exc.value.diagnostic.code == "G604"


def test_a_missing_branch_is_reported(org: OrgRepo, tmp_path: Path) -> None:
    org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    with pytest.raises(GitSourceError) as exc:
        GitSource(org.url, "production", tmp_path / "cache").head()
    assert exc.value.diagnostic.code == "G603"
    assert "production" in exc.value.diagnostic.message


def test_status_commits_are_recognised_only_when_they_touch_status_alone(org: OrgRepo, tmp_path: Path) -> None:
    base = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    trailer = ("-c", "trailer.sep=: ")
    own = org.commit("status\n\nHiclaw-Gitops-Status: true", {".hiclaw/status/README.md": "x"}, extra=trailer)
    forged = org.commit("sneaky\n\nHiclaw-Gitops-Status: true", {"workers/bob.yaml": worker("bob")}, extra=trailer)
    org.push()
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    assert source.org_commit(own, ".hiclaw/status") == base
    assert source.org_commit(forged, ".hiclaw/status") == forged  # a trailer cannot hide an org change


def test_the_cache_survives_a_changed_url(org: OrgRepo, tmp_path: Path) -> None:
    tip = org.commit_and_push("one", {"workers/alice.yaml": worker("alice")})
    GitSource(str(tmp_path / "old.git"), "main", tmp_path / "cache")
    source = GitSource(org.url, "main", tmp_path / "cache")
    assert source.fetch() == tip
    assert pygit2.Repository(str(tmp_path / "cache")).remotes["origin"].url == org.url
    assert git("--git-dir", str(tmp_path / "cache"), "rev-parse", "refs/remotes/origin/main", home=tmp_path) == tip


class _AuthServer:
    """An HTTP server on loopback that demands Basic auth and records what the client sent."""

    def __init__(self) -> None:
        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization") or "")
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/org.git"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_https_token_is_sent_as_basic_auth_and_refusal_is_reported(tmp_path: Path) -> None:
    server = _AuthServer()
    try:
        source = GitSource(server.url, "main", tmp_path / "cache", auth=GitAuth(token="tok-abc123def456"), timeout=5)
        with pytest.raises(GitSourceError) as exc:
            source.head()
    finally:
        server.stop()
    assert exc.value.diagnostic.code == "G602"
    sent = {base64.b64decode(h.removeprefix("Basic ")).decode() for h in server.seen if h}
    assert sent == {"x-access-token:tok-abc123def456"}
    assert len(server.seen) <= 4  # a refused token is not retried forever
    assert "tok-abc123def456" not in str(exc.value) and "tok-abc123def456" not in repr(source.auth)


def test_looking_for_a_repository_where_there_is_none_leaves_none_alone(tmp_path: Path) -> None:
    """pygit2 1.21's discover_repository drops a reference to None each time it finds nothing; after some
    ten thousand calls in one process (the fuzzer's, a daemon's) Python aborted with "deallocating None"."""
    import gc
    import sys

    from gitops.source.trees import discover_repository

    gc.collect()
    before = sys.getrefcount(None)
    for _ in range(2000):
        assert discover_repository(tmp_path, str(tmp_path.parent)) is None
    gc.collect()
    assert abs(sys.getrefcount(None) - before) < 200  # without the fix: 2,000 fewer
