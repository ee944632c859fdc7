"""`hiclaw-gitops run` as an operator starts it, with a Matrix section: the admin asks in the room, the real
process answers, records the command in status history, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from deploy.synapse import Synapse
from tests.git.gitutil import OrgRepo

from .harness import ADMIN_PASSWORD, admin_room, wait_for, worker


def test_the_run_command_listens_answers_and_records(homeserver: Synapse, tmp_path: Path) -> None:
    org = OrgRepo(tmp_path / "remote")
    admin, bob = admin_room(homeserver)
    first = org.commit_and_push("w1", {"workers/w1.yaml": worker("w1")})
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({
        "source": {"url": org.url, "poll_interval": 3600, "jitter": 0},
        "state_dir": str(tmp_path / "state"),
        "status": {"listen": ""},
        "matrix": homeserver.settings(),
        "chatops": {"room": admin.room_id, "poll_timeout": 1},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HICLAW_GITOPS_", "GIT_"))}
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gitops", "run", "--settings", str(settings)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: org.tip("hiclaw-status"), 90, "the first status commit")
            wait_for(lambda: (tmp_path / "state" / "chatops.json").exists(), 30, "the listener's first sync")
            status = admin.reply_to(admin.send("!gitops status"), 60)
            assert status.startswith(f"last run: Reconciled for commit {first[:12]}")
            assert "may not command" in bob.reply_to(bob.send("!gitops suspend"), 60)
            wait_for(lambda: "chatops: @bob:localhost `suspend` → refused" in
                     org.bare_git("log", "--format=%s", "hiclaw-status"), 30, "the refusal's status commit")
            history = subprocess.run([sys.executable, "-m", "gitops", "history", "--settings", str(settings),
                                      "--format", "json"], capture_output=True, text=True, env=env, check=False)
            entries = json.loads(history.stdout)
            commands = [e for e in entries if e["result"] == "Command"]
            assert commands and commands[0]["subject"].startswith("chatops: ")
            assert any(e["result"] == "Reconciled" and e["reconciledCommit"] == first for e in entries)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    assert code == 0
    text = log.read_text(errors="replace")
    secret_files = [homeserver.actor_password_file, homeserver.actor_token_file]
    values = [ADMIN_PASSWORD, *(p.read_text().strip() for p in secret_files)]
    assert sum(v in text for v in values) == 0
    assert '"chat command"' in text or "chat command" in text
