"""The demo (`bash deploy/demo.sh`): bring up the embedded local stack and reconcile the example org onto it, twice.

The first pass shows the plan, applies it and verifies; the second must plan `No changes.` — the product's
promise that a pass with no new commit changes nothing. `--serve` then keeps the daemon (`hiclaw-gitops run`)
going on the stack, following a local git repository of the org (`<state>/org.git`, a working copy beside it in
`<state>/org`), with chat commands in the admin's Matrix room, until Ctrl-C. `--down` stops a serving demo,
removes the demo's containers and network (and stops a Docker engine the demo itself started).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from deploy.localstack import DEFAULT_STATE_DIR, LOCAL_INSTANCE, LocalStack, StackError, network_of

EXAMPLE_ORG = "example-org"
SERVE_PID = "serve.pid"  # the serving demo's process, for --down
SERVE_SETTINGS = "serve.yaml"
REPO, WORKING_COPY, BRANCH = "org.git", "org", "main"
POLL_INTERVAL = 5.0
DEMO_AUTHOR = {"GIT_AUTHOR_NAME": "hiclaw demo", "GIT_AUTHOR_EMAIL": "demo@localhost",
               "GIT_COMMITTER_NAME": "hiclaw demo", "GIT_COMMITTER_EMAIL": "demo@localhost"}


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.demo [PATH] [--serve] [--down] [--state-dir DIR] [--instance NAME] [--color WHEN]` (what
    deploy/demo.sh runs)."""
    p = argparse.ArgumentParser(
        prog="deploy/demo.sh",
        description="Start the local stack — the Docker engine (`dockerd`, as root, when its socket does not "
        "answer), stand-in agent images built FROM scratch, a Matrix homeserver (Synapse, installed from PyPI "
        "into its own virtualenv on first use) and an object store (SeaweedFS from PyPI, with per-agent IAM users) "
        "— write a settings file into the state directory "
        f"(default {DEFAULT_STATE_DIR}), then reconcile PATH (default ./{EXAMPLE_ORG}): show the plan, apply "
        "and verify it, and run a second pass that must change nothing. Exit 0 when both passes succeed.",
    )
    p.add_argument("path", nargs="?", default=None, help=f"org directory (default: ./{EXAMPLE_ORG})")
    p.add_argument("--down", action="store_true",
                   help="remove the demo's containers and network instead, stop the homeserver and the object store "
                   "(their data is kept in the state directory) and a dockerd the demo started")
    p.add_argument("--serve", action="store_true",
                   help=f"after the two passes, keep the daemon (hiclaw-gitops run) going until Ctrl-C: it follows a "
                   f"local git repository of the org (DIR/{REPO}, made on first use from PATH, with a working copy "
                   f"in DIR/{WORKING_COPY}) and takes chat commands in the Manager DM; it prints how to log in and "
                   "what to try")
    p.add_argument("--state-dir", metavar="DIR", help=f"state directory (default {DEFAULT_STATE_DIR})")
    p.add_argument("--instance", metavar="NAME", default=None,
                   help=f"label of the demo's containers (default {LOCAL_INSTANCE}; network "
                   f"{network_of(LOCAL_INSTANCE)}, else NAME-net), so that a second stack can share the engine — "
                   "container names are the agents' own and stay global. --down reads it from the state "
                   "directory's settings")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour (default: auto)")
    args = p.parse_args(argv)
    args.color = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    )
    return run(args)


def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir or DEFAULT_STATE_DIR)
    if args.down:
        from deploy.localstack import written_instance

        return down(LocalStack.default(state_dir, instance=args.instance or written_instance(state_dir)))
    stack = LocalStack.default(state_dir, instance=args.instance or LOCAL_INSTANCE)
    org = Path(args.path or EXAMPLE_ORG)
    if not org.is_dir():
        print(f"hiclaw-gitops: {org}: not a directory (run the demo from the project root, or pass PATH)",
              file=sys.stderr)
        return 1
    manager = manager_of(org) if args.serve else ""
    if args.serve and manager == "":  # an invalid org (None) is reported by the first pass instead
        print(f"hiclaw-gitops: --serve needs a Manager in {org}: chat commands are taken in the Manager DM, the "
              "admin's room", file=sys.stderr)
        return 1
    try:
        settings_file = stack.up(say=lambda line: print(f"stack: {line}"))
    except StackError as exc:
        print(f"hiclaw-gitops: the local stack cannot start: {exc}", file=sys.stderr)
        return 1
    print(f"stack: settings written to {settings_file}")
    try:
        from gitops.commands.apply import render_plan, render_result, session
        from gitops.pipeline import reconcile
    except ImportError as exc:
        print(f"hiclaw-gitops: the stack is up, but this build cannot reconcile yet: {exc} "
              "(the demo needs gitops.reconcile.reconcile and the apply command)", file=sys.stderr)
        return 1
    from deploy.localstack import settings_document
    from gitops.settings.model import from_mapping

    settings = from_mapping(settings_document(state_dir, stack.instance))
    session_args = argparse.Namespace(settings=str(settings_file), org_path=None, state_dir=str(state_dir))
    for number in (1, 2):
        print(f"\n== pass {number}: reconcile {org} onto the local Docker engine and Matrix homeserver")
        with session(session_args, settings, str(org)) as s:
            result: Any = reconcile(s.org.source, s.settings, head=s.org.head, store=s.store, secrets=s.secrets,
                                    backends=s.backends)
        for diagnostic in result.diagnostics:
            print(diagnostic.message, file=sys.stderr)
        if result.plan is not None:
            sys.stdout.write(render_plan(result.plan, args.color))
        if result.run is not None:
            sys.stdout.write(render_result(result.run, args.color))
        if result.error or not result.ok:
            print(f"hiclaw-gitops: pass {number} did not succeed ({result.phase}) {result.error}".rstrip(),
                  file=sys.stderr)
            return 1
        if number == 2 and result.plan is not None and result.plan.has_changes:
            print("hiclaw-gitops: the second pass planned changes: live state did not converge", file=sys.stderr)
            return 1
    print(f"\nThe example org runs on the local engine (containers labelled hiclaw.io/managed-by={stack.instance}).")
    print(f"Inspect: docker ps --filter label=hiclaw.io/managed-by={stack.instance}")
    if settings.matrix is not None:
        from deploy.localstack import ADMIN_PASSWORD_SECRET

        print(f"Matrix:  homeserver {settings.matrix.url} (server name {settings.matrix.server_name}); log in with any "
              f"Matrix client as @{settings.matrix.admin_user}:{settings.matrix.server_name}")
        print(f"         its password: .venv/bin/hiclaw-gitops secrets get {ADMIN_PASSWORD_SECRET} "
              f"--state-dir {state_dir}")
    if settings.storage is not None:
        print(f"Storage: S3 and IAM at http://{settings.storage.endpoint}, bucket {settings.storage.bucket}; each "
              f"agent's key: .venv/bin/hiclaw-gitops secrets get storage/<agent>/secret-key --state-dir {state_dir}")
    print(f"Remove:  bash deploy/demo.sh --down --state-dir {state_dir}")
    if args.serve:
        return serve(state_dir, org, manager or "", stack.instance, settings)
    return 0


def down(stack: LocalStack) -> int:
    from deploy.localstack import engine_answers, remove_instance
    from deploy.process import stop

    # First the daemon of a serving demo: it would re-create what is removed next.
    print(f"stack: {stop(stack.state_dir / SERVE_PID, b'deploy.demo', 'serving demo (hiclaw-gitops run)', 60)}")
    if engine_answers():
        for what in remove_instance(stack.instance, network_of(stack.instance)):
            print(f"removed {what}")
    else:
        print("stack: no Docker engine answers; nothing to remove")
    stack.down(say=lambda line: print(f"stack: {line}"))
    return 0


# --serve -------------------------------------------------------------------------------------------


def manager_of(org: Path) -> str | None:
    """The name of the org's Manager ('' when it has none; None when the org is invalid: the first pass says why)."""
    from gitops.pipeline import read_org
    from gitops.source.files import DirectorySource

    read = read_org(DirectorySource(org))
    if not read.ok:
        return None
    return next((r.name for r in read.validation.org.resources() if r.kind == "Manager"), "")


def git(*args: str, cwd: Path | None = None, author: bool = False) -> None:
    env = {**os.environ, **DEMO_AUTHOR} if author else None
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"git {' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()[-400:]}")


def org_repository(state_dir: Path, org: Path) -> tuple[Path, Path, bool]:
    """The local repository the serving daemon follows and its working copy; made from `org` (one commit on
    `main`) when missing, else kept as the person left it. (repository, working copy, made now)."""
    repo, work = (state_dir / REPO).resolve(), (state_dir / WORKING_COPY).resolve()
    if (repo / "HEAD").is_file():
        return repo, work, False
    if shutil.which("git") is None:
        raise StackError("git is not installed: `apt-get install -y git`")
    shutil.rmtree(work, ignore_errors=True)  # a working copy without its repository is a half-made one
    git("init", "-q", "--bare", "-b", BRANCH, str(repo))
    shutil.copytree(org, work, ignore=shutil.ignore_patterns(".git", ".hiclaw-*"))
    git("init", "-q", "-b", BRANCH, cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"The org chart, from {org}", cwd=work, author=True)
    git("remote", "add", "origin", str(repo), cwd=work)
    git("push", "-q", "--set-upstream", "origin", BRANCH, cwd=work)
    return repo, work, True


def mass_deletion(org: Path) -> str:
    """Folders of `org` whose removal deletes many agents and leaves a valid org ('' when there are none): the
    teams (else the workers), with the Humans that name them (a Human naming a missing team is invalid)."""
    agents = next((d for d in ("teams", "workers") if (org / d).is_dir()), "")
    return f"{agents} humans" if agents and (org / "humans").is_dir() else agents


def serve_settings(state_dir: Path, instance: str, repo: Path, room: str) -> Path:
    """The daemon's settings: the stack's, plus the local repository as source, health on a free loopback port,
    and the Manager DM as the admin's room (escalations and chat commands)."""
    from deploy.localstack import settings_document
    from deploy.process import free_port

    document = settings_document(state_dir, instance)
    document["source"] = {"url": str(repo), "branch": BRANCH, "poll_interval": POLL_INTERVAL, "jitter": 0}
    document["status"] = {"listen": f"127.0.0.1:{free_port()}"}
    document["notify"] = {"room": room}
    path = state_dir / SERVE_SETTINGS
    text = "# Written by `bash deploy/demo.sh --serve`: the daemon on the local stack, following a local repository.\n"
    path.write_text(text + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def serve(state_dir: Path, org: Path, manager: str, instance: str, settings: Any) -> int:
    """Run the daemon in this process until Ctrl-C (or SIGTERM, or `--down`); its exit code."""
    from deploy.localstack import ADMIN_PASSWORD_SECRET

    try:
        repo, work, made = org_repository(state_dir, org)
    except StackError as exc:
        print(f"hiclaw-gitops: cannot make the local repository: {exc}", file=sys.stderr)
        return 1
    matrix = settings.matrix
    room = f"#hiclaw-manager-{manager}:{matrix.server_name}"
    settings_file = serve_settings(state_dir, instance, repo, room)
    wc = f"git -C {work}"
    gone = mass_deletion(work)
    print(f"\n== serving: hiclaw-gitops run follows {repo} (branch {BRANCH}; "
          f"{'made now from ' + str(org) if made else 'kept from an earlier --serve'}), polling every "
          f"{POLL_INTERVAL:.0f} s, with chat commands in the admin's room. Ctrl-C stops it.")
    print(f"Log in:   any Matrix client; homeserver {matrix.url}, user @{matrix.admin_user}:{matrix.server_name}")
    print(f"          its password: .venv/bin/hiclaw-gitops secrets get {ADMIN_PASSWORD_SECRET} "
          f"--state-dir {state_dir}")
    print(f"Room:     {room} (the Manager DM; accept the invitation) — escalations and chat commands")
    print("Try:      !gitops help    !gitops status    !gitops sync    (answers come as notices, in reply)")
    print(f"Change:   edit {work}, then: {wc} commit -qam 'what changed' && {wc} push -q")
    if gone:
        print(f"Approve:  delete many agents at once: {wc} rm -rq {gone} && {wc} commit -qm 'remove agents' && "
              f"{wc} push -q")
    else:
        print("Approve:  delete many agents at once (more than prune.max_agents, 5, or a quarter of them), commit "
              "and push")
    print("          the pass is refused (the prune guard) and the room asks for an approval: reply to that message "
          "with !gitops approve")
    print(f"History:  git -C {repo} log --oneline hiclaw-status    (passes, and chat commands as `chatops:` commits)")
    print(f"Settings: {settings_file}; stop with Ctrl-C (the stack stays up: bash deploy/demo.sh --down --state-dir "
          f"{state_dir})", flush=True)
    from gitops import cli

    def stopped_early(signum: int, frame: Any) -> None:  # SIGTERM (--down) before the daemon takes its signals
        raise KeyboardInterrupt

    pid_file = state_dir / SERVE_PID
    previous = signal.signal(signal.SIGTERM, stopped_early)
    pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        code = cli.main(["run", "--settings", str(settings_file), "--log-format", "text"])
    finally:
        pid_file.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)
    print(f"\nhiclaw-gitops run stopped (exit {code}); the stack is still up: bash deploy/demo.sh --down "
          f"--state-dir {state_dir}", flush=True)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the daemon took over its signals
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
