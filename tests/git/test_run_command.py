"""`hiclaw-gitops run`, `status` and `history` as an operator uses them: a real process, real git, HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gitops.cli import main
from gitops.daemon.health import Health
from gitops.daemon.metrics import Metrics
from gitops.daemon.server import HttpServer

from .gitutil import INVALID_WORKER, OrgRepo, free_port, git, wait_for, worker

TOKEN = "tok-5e6f7a8b9c0d1e2f3a4b"
HOOK_SECRET = "hook-0a1b2c3d4e5f6a7b"


def sign(body: bytes, secret: str = HOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HICLAW_GITOPS_", "GIT_"))}


def write_settings(tmp_path: Path, url: str, port: int) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    for name, value in (("token", TOKEN), ("hook", HOOK_SECRET)):
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({
        "source": {"url": url, "poll_interval": 3600, "jitter": 0, "token_file": "secrets/token",
                   "webhook_secret_file": "secrets/hook"},
        "status": {"listen": f"127.0.0.1:{port}"},
        "state_dir": "state",
    }))
    return path


class Running:
    """A `hiclaw-gitops run` process and an HTTP client for its endpoint."""

    def __init__(self, settings: Path, port: int, log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gitops", "run", "--settings", str(settings)],
                                     stdout=subprocess.DEVNULL, stderr=self._log, env=clean_env())
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False)

    def get(self, path: str) -> httpx.Response | None:
        try:
            return self.http.get(path)
        except httpx.TransportError:
            assert self.proc.poll() is None, f"daemon exited: {self.log()}"
            return None

    def metrics(self) -> str:
        r = self.get("/metrics")
        return r.text if r is not None else ""

    def metric(self, name: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def webhook(self, body: bytes, signature: str | None) -> httpx.Response:
        headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return self.http.post("/webhook", content=body, headers=headers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        finally:
            self.http.close()
            self._log.close()


@pytest.fixture
def running(org: OrgRepo, tmp_path: Path) -> Iterator[tuple[Running, Path]]:
    port = free_port()
    settings = write_settings(tmp_path, org.url, port)
    org.commit_and_push("valid", {"workers/alice.yaml": worker("alice")})
    daemon = Running(settings, port, tmp_path / "daemon.log")
    try:
        yield daemon, settings
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(5)


def test_run_writes_one_status_commit_per_pushed_commit(org: OrgRepo, running: tuple[Running, Path],
                                                        tmp_path: Path) -> None:
    daemon, settings = running
    push = json.dumps({"ref": "refs/heads/main"}).encode()
    wait_for(lambda: len(org.log("hiclaw-status")) == 1, what="the first status commit")
    summary = yaml.safe_load(org.show("hiclaw-status", "status/summary.yaml"))
    assert summary["result"] == "Validated"
    wait_for(lambda: daemon.metric('hiclaw_gitops_reconciles_total{result="Validated"}') == 1, what="metrics")
    ready = daemon.get("/readyz")
    assert ready is not None and ready.status_code == 200 and ready.json()["ready"] is True
    healthy = daemon.get("/healthz")
    assert healthy is not None and healthy.status_code == 200

    invalid = org.commit_and_push("invalid", {"workers/alice.yaml": INVALID_WORKER})
    assert daemon.webhook(push, sign(push)).status_code == 202
    wait_for(lambda: len(org.log("hiclaw-status")) == 2, what="the status of the invalid commit")
    summary = yaml.safe_load(org.show("hiclaw-status", "status/summary.yaml"))
    assert (summary["commit"], summary["result"]) == (invalid, "Invalid")
    assert {d["code"] for d in summary["diagnostics"]} == {"S301", "S303"}
    wait_for(lambda: daemon.metric('hiclaw_gitops_reconciles_total{result="Invalid"}') == 1, what="metrics")

    fixed = org.commit_and_push("fixed", {"workers/alice.yaml": worker("alice", model="gpt-5")})
    assert daemon.webhook(push, sign(push)).status_code == 202
    wait_for(lambda: len(org.log("hiclaw-status")) == 3, what="the status of the fixed commit")
    summary = yaml.safe_load(org.show("hiclaw-status", "status/summary.yaml"))
    assert (summary["commit"], summary["result"], summary["diagnostics"]) == (fixed, "Validated", [])
    wait_for(lambda: daemon.metric('hiclaw_gitops_reconciles_total{result="Validated"}') == 2, what="metrics")
    text = daemon.metrics()
    assert f'hiclaw_gitops_last_reconciled_commit_info{{commit="{fixed}",result="Validated"}} 1.0' in text
    assert 'hiclaw_gitops_resources{kind="Worker",phase="Pending"} 1.0' in text
    assert 'hiclaw_gitops_reconcile_duration_seconds_count{result="Invalid"} 1.0' in text

    # A poll with nothing new writes nothing.
    assert daemon.webhook(push, sign(push)).status_code == 202
    wait_for(lambda: daemon.metric('hiclaw_gitops_polls_total{outcome="unchanged"}') == 1, what="an idle poll")
    assert len(org.log("hiclaw-status")) == 3

    # A bad or missing signature triggers nothing.
    assert daemon.webhook(push, sign(push, "wrong")).status_code == 401
    assert daemon.webhook(push, None).status_code == 401
    assert daemon.metric('hiclaw_gitops_webhooks_total{outcome="unauthorized"}') == 2

    # A second daemon on the same state directory refuses to start.
    second = subprocess.run([sys.executable, "-m", "gitops", "run", "--settings", str(settings), "--listen", ""],
                            capture_output=True, text=True, env=clean_env(), timeout=30)
    assert second.returncode == 1
    assert f"another hiclaw-gitops daemon (pid {daemon.proc.pid}) is running" in second.stderr

    assert daemon.stop() == 0  # SIGTERM: a clean exit
    lines = [json.loads(line) for line in daemon.log().splitlines()]
    assert lines[-1]["msg"] == "stopped"
    assert any(line["msg"] == "stopping: the pass in flight finishes first" for line in lines)
    everything = daemon.log() + org.bare_git("log", "-p", "--all")
    assert TOKEN not in everything and HOOK_SECRET not in everything

    # Status and history read it back, for people and for machines.
    out = cli(tmp_path, "status", "--settings", str(settings))
    assert "Last run: Validated" in out and "Worker  alice  Pending" in out
    data = json.loads(cli(tmp_path, "status", "worker/alice", "--format", "json", "--settings", str(settings)))
    assert [r["name"] for r in data["resources"]] == ["alice"] and data["summary"]["commit"] == fixed
    history = json.loads(cli(tmp_path, "history", "--format", "json", "--settings", str(settings)))
    assert [(h["reconciledCommit"], h["result"]) for h in history][:2] == [(fixed, "Validated"), (invalid, "Invalid")]
    table = cli(tmp_path, "history", "--settings", str(settings))
    assert table.splitlines()[0].split()[:3] == ["TIME", "RESULT", "COMMIT"] and "Invalid" in table
    offline = cli(tmp_path, "status", "--offline", "--state-dir", str(tmp_path / "state"))
    assert "Last run: Validated" in offline  # from the daemon's cache, with no URL and no network
    assert git("--git-dir", str(tmp_path / "state" / "git"), "remote", "get-url", "origin", home=tmp_path) == org.url


def cli(tmp_path: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gitops", *args], capture_output=True, text=True,
                          env=clean_env(), timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_once_against_an_unreachable_remote_fails_with_a_diagnostic(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gitops", "run", "--once", "--repo", str(tmp_path / "missing.git"),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert done.returncode == 1
    errors = [json.loads(line) for line in done.stderr.splitlines() if '"error"' in line]
    assert errors and errors[0]["code"] == "G601" and "no repository at" in errors[0]["error"]


def test_once_refuses_bad_settings_before_touching_anything(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("source:\n  url: /nowhere\n  token_file: missing-token\nstorage:\n  bucket: b\n")
    done = subprocess.run([sys.executable, "-m", "gitops", "run", "--once", "--settings", str(settings)],
                          capture_output=True, text=True, env=clean_env(), timeout=30, cwd=tmp_path)
    assert done.returncode == 1
    assert f"{settings}:4:1: error[C501]: `storage` is configured but `storage.endpoint` is not set" in done.stderr
    assert not (tmp_path / ".hiclaw-state").exists()


def test_once_twice_writes_nothing_the_second_time(org: OrgRepo, tmp_path: Path) -> None:
    org.commit_and_push("valid", {"workers/alice.yaml": worker("alice")})
    args = ["run", "--once", "--repo", org.url, "--state-dir", str(tmp_path / "state"), "--log-format", "text"]
    assert main(args) == 0
    assert len(org.log("hiclaw-status")) == 1
    assert main(args) == 0
    assert len(org.log("hiclaw-status")) == 1


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(timeout=5, trust_env=False) as client:
        return client.post(url, content=body, headers=headers)


def test_webhook_hmac_and_endpoints() -> None:
    wake = threading.Event()
    health, metrics = Health(), Metrics()
    server = HttpServer("127.0.0.1:0", health=health, metrics=metrics, wake=wake, webhook_secret=HOOK_SECRET,
                        branch="main").start()
    base = f"http://{server.address}"
    try:
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        assert post(f"{base}/webhook", body, {"X-Hub-Signature-256": sign(body, "nope")}).status_code == 401
        assert not wake.is_set()
        assert post(f"{base}/webhook", body, {}).status_code == 401
        assert not wake.is_set()
        ok = post(f"{base}/webhook", body, {"X-Hub-Signature-256": sign(body)})
        assert ok.status_code == 202 and ok.json() == {"queued": True} and wake.is_set()
        wake.clear()
        other = json.dumps({"ref": "refs/heads/hiclaw-status"}).encode()
        ignored = post(f"{base}/webhook", other, {"X-Hub-Signature-256": sign(other)})
        assert ignored.status_code == 202 and ignored.json()["queued"] is False and not wake.is_set()
        ping = post(f"{base}/webhook", b"{}", {"X-Hub-Signature-256": sign(b"{}"), "X-GitHub-Event": "ping"})
        assert ping.status_code == 200 and not wake.is_set()
        with httpx.Client(timeout=5, trust_env=False) as client:
            assert client.get(f"{base}/readyz").status_code == 503  # no poll yet
            health.set_ready(True)
            assert client.get(f"{base}/readyz").status_code == 200
            assert client.get(f"{base}/healthz").status_code == 200
            scrape = client.get(f"{base}/metrics")
            assert scrape.status_code == 200 and "text/plain" in scrape.headers["content-type"]
            assert 'hiclaw_gitops_webhooks_total{outcome="unauthorized"} 2.0' in scrape.text
            assert client.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()
    unconfigured = HttpServer("127.0.0.1:0", health=health, metrics=metrics, wake=wake).start()
    try:
        assert post(f"http://{unconfigured.address}/webhook", b"{}", {}).status_code == 404
    finally:
        unconfigured.stop()
