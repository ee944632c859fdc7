"""`deploy/demo.sh --serve` as a person uses it, in a real process on the real engine and the demo's own Synapse:
the demo reconciles an org, then serves it from a local repository; the Global Admin logs in as the demo says,
asks for status, triggers a pass, deletes most agents in the working copy and approves the guarded plan by
replying; Ctrl-C stops the daemon; served again, the repository is kept, and `--down` stops the daemon and removes
everything.

Isolation: this session's instance (`--instance`), and agent names of this test only (container names are
global to the engine), so neither a demo someone runs nor another test is touched.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from dockerharness import INSTANCE

from deploy import localstack
from tests.chatops.harness import Person, q, wait_for

ROOT = Path(__file__).resolve().parents[2]
TAG = "srv" + secrets.token_hex(3)
AGENTS = ("a", "b", "c")
DOWN = [sys.executable, "-m", "deploy.demo", "--down", "--state-dir"]


def write_org(path: Path) -> None:
    (path / "workers").mkdir(parents=True)
    (path / "manager.yaml").write_text(f"apiVersion: hiclaw.io/v1beta1\nkind: Manager\nmetadata:\n  name: {TAG}\n"
                                       "spec:\n  model: qwen3.6-plus\n")
    for agent in AGENTS:
        (path / "workers" / f"{TAG}-{agent}.yaml").write_text(
            f"apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: {TAG}-{agent}\n"
            "spec:\n  model: qwen3.6-plus\n")


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Pat", "GIT_AUTHOR_EMAIL": "pat@localhost",
           "GIT_COMMITTER_NAME": "Pat", "GIT_COMMITTER_EMAIL": "pat@localhost"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {args[0]} failed: {done.stderr[-300:]}"
    return done.stdout.strip()


def containers(client: Any) -> list[str]:
    found = client.api.containers(all=True, filters={"label": [f"hiclaw.io/managed-by={INSTANCE}"]})
    return sorted(str(c["Names"][0]).lstrip("/") for c in found)


def test_serve_lets_the_admin_ask_sync_and_approve_a_mass_deletion_by_replying(docker_client: Any,
                                                                              tmp_path: Path) -> None:
    org, state, log = tmp_path / "org-source", tmp_path / "state", tmp_path / "serve.log"
    write_org(org)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HICLAW_GITOPS_", "GIT_"))}
    command = [sys.executable, "-m", "deploy.demo", "--serve", "--state-dir", str(state), "--instance", INSTANCE,
               "--color", "never", str(org)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    password = ""
    try:
        text = wait_for(lambda: ("Settings: " in (t := log.read_text(errors="replace")) or proc.poll() is not None)
                        and t, 300, "the demo to serve")
        assert proc.poll() is None, f"the demo ended: {text[-3000:]}"
        url = re.search(r"homeserver (http://127\.0\.0\.1:\d+), user (@admin:\S+)", text)
        room = re.search(r"Room:     (#hiclaw-manager-\S+)", text)
        printed = re.search(r"its password: \.venv/bin/hiclaw-gitops (secrets get \S+ --state-dir \S+)", text)
        assert url and room and printed, text[-2000:]
        assert room.group(1).startswith(f"#hiclaw-manager-{TAG}:")
        repo, work = state / "org.git", state / "org"
        head = git("rev-parse", "main", cwd=repo)
        wait_for(lambda: subprocess.run(["git", "rev-parse", "-q", "--verify", "hiclaw-status"], cwd=repo,
                                        capture_output=True, check=False).returncode == 0, 120,
                 "the daemon's first status commit")
        wait_for(lambda: (state / "chatops.json").exists(), 60, "the listener's first sync")

        # The person does what the demo printed: the password from `secrets get`, then any Matrix client.
        shown = subprocess.run([sys.executable, "-m", "gitops", *printed.group(1).split()], cwd=ROOT, env=env,
                               capture_output=True, text=True, check=False)
        assert shown.returncode == 0, shown.stderr[-300:]
        password = shown.stdout.strip()
        hs = localstack.homeserver(state)
        assert hs.url == url.group(1)
        token = hs.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "admin"},
            "password": password})["access_token"]
        admin = Person(hs, url.group(2), str(token))
        admin.room_id = str(admin.call("POST", f"/_matrix/client/v3/join/{q(room.group(1))}", {})["room_id"])

        status = admin.reply_to(admin.send("!gitops status"), 120)
        assert status.startswith(f"last run: Reconciled for commit {head[:12]}"), status
        synced = admin.reply_to(admin.send("!gitops sync"), 120)
        assert synced.startswith(f"sync: last run: Reconciled for commit {head[:12]}"), synced
        assert len(containers(docker_client)) == 1 + len(AGENTS)

        git("rm", "-rq", "workers", cwd=work)
        git("commit", "-qm", "remove the workers", cwd=work)
        git("push", "-q", cwd=work)
        removal = git("rev-parse", "main", cwd=repo)
        request = wait_for(lambda: [b for _, b in admin.notices() if "Approval ID: " in b], 120,
                           "the approval request")[0]
        assert request.startswith(f"🛑 hiclaw-gitops: the prune guard stopped commit {removal[:12]}")
        assert "3 of 4 agents would be deleted" in request
        assert len(containers(docker_client)) == 1 + len(AGENTS)  # refused: nothing deleted yet
        ident = re.search(r"Approval ID: (\w+)", request)
        assert ident is not None
        approved = admin.reply_to(admin.answer(admin.notice_id(f"Approval ID: {ident.group(1)}"), request,
                                               "!gitops approve"), 180)
        assert approved.startswith(f"approval {ident.group(1)} by {url.group(2)}: commit {removal[:12]} applied "
                                   "once"), approved
        assert containers(docker_client) == [f"hiclaw-manager-{TAG}"]
        # Recorded once the batch is answered: the approval's record may follow its reply by a moment.
        history = wait_for(lambda: f"`approve {ident.group(1)}` → done" in (h := git("log", "--format=%s",
                           "hiclaw-status", cwd=repo)) and h, 30, "the approval's record in status history")
        assert f"chatops: {url.group(2)} `status` → done" in history and "`sync` → done" in history

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(90) == 0
        text = log.read_text(errors="replace")
        assert "hiclaw-gitops run stopped (exit 0)" in text and "Traceback" not in text
        assert not (state / "serve.pid").exists()

        # Serving again keeps the person's repository; `--down` from another terminal stops the daemon first.
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        wait_for(lambda: "listening=True" in log.read_text(errors="replace") or proc.poll() is not None, 300,
                 "the demo to serve again")
        assert "kept from an earlier --serve" in log.read_text(errors="replace")
        assert git("rev-parse", "main", cwd=repo) == removal
        down = subprocess.run([*DOWN, str(state)], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        assert down.returncode == 0 and "removed network" in down.stdout, down.stdout[-1000:] + down.stderr[-500:]
        assert "serving demo (hiclaw-gitops run): stopped (pid" in down.stdout
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if (state / "settings.yaml").exists():  # whatever happened: nothing of this test stays up
            subprocess.run([*DOWN, str(state)], cwd=ROOT, env=env, capture_output=True, check=False)
        localstack.remove_instance(INSTANCE, localstack.network_of(INSTANCE))
    assert containers(docker_client) == []
    text = log.read_text(errors="replace")
    assert bool(password) and password not in text  # the secret never reaches the demo's output


def test_serve_needs_a_manager_and_says_so_before_starting_anything(tmp_path: Path, capsys: Any) -> None:
    from deploy import demo

    org = tmp_path / "org"
    write_org(org)
    (org / "manager.yaml").unlink()
    assert demo.main(["--serve", "--state-dir", str(tmp_path / "state"), str(org)]) == 1
    assert "--serve needs a Manager" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # no stack was started
