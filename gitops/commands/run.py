"""`hiclaw-gitops run`: the reconciler daemon (poll, reconcile, write status back, serve health and metrics)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gitops.commands._common import add_command, load_settings
from gitops.commands.status import fail as _fail

if TYPE_CHECKING:
    from gitops.daemon.health import Health
    from gitops.daemon.loopstate import LoopState
    from gitops.daemon.metrics import Metrics
    from gitops.daemon.notify import EscalationTracker
    from gitops.daemon.passes import DaemonPass
    from gitops.settings.model import Settings

# A --once pass whose commit ends in one of these exits 1 (`Validated`, `Reconciled` exit 0).
FAILED_RESULTS = ("Invalid", "Failed", "Refused")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "run", ("settings", "repo", "branch", "path", "state_dir", "status_branch", "color"),
        help="run the reconciler: poll the repository, reconcile each new commit, write status back",
        description=(
            "Follow one branch of the org repository. Each new commit is validated and reconciled once, and one "
            "status commit records the outcome. A poll with no new commit costs one round trip and writes nothing. "
            "Serves /healthz, /readyz, /metrics and a GitHub-style webhook (POST /webhook). SIGTERM lets the pass "
            "in flight finish. Exit 0 on a clean stop; with --once, 0 when the commit is valid and its pass succeeded "
            "(or nothing new was there), 1 when the commit is invalid, refused or its pass failed. Needs the "
            "`daemon` extra (pip install 'hiclaw-gitops[daemon]', or [all] with every backend)."
        ),
    )
    p.add_argument("--once", action="store_true", help="one poll and at most one pass, then exit")
    p.add_argument("--watch", metavar="DIR",
                   help="development: reconcile a local directory whenever its YAML files change (no git)")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="HTTP endpoint (overrides status.listen; '' turns it off; default off with --once)")
    p.add_argument("--log-format", choices=("json", "text"), default="json", help="log line format (default: json)")
    p.add_argument("--strict", action="store_true", help="treat documents with a foreign apiVersion as errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops.daemon.lock import LockHeld, StateLock
    from gitops.daemon.logs import configure_logging
    from gitops.extras import require, require_backends
    from gitops.providers.wiring import backend_names

    require("daemon", "`run` (the daemon)")
    settings = load_settings(args, secrets=True)
    require_backends((p.value, n) for p, n in backend_names(settings).items())
    configure_logging(args.log_format)
    state_dir = Path(settings.state_dir)
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except LockHeld as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hiclaw-gitops: cannot lock the state directory {state_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        return _run_locked(args, settings, state_dir)
    finally:
        lock.release()


def _run_locked(args: argparse.Namespace, settings: Settings, state_dir: Path) -> int:
    from gitops.apply.secrets import SecretError as StoreError
    from gitops.daemon.health import Health
    from gitops.daemon.loopstate import LoopState
    from gitops.daemon.metrics import Metrics
    from gitops.daemon.notify import EscalationTracker, notifier_from_settings
    from gitops.daemon.passes import default_pass
    from gitops.providers.wiring import BackendsUnavailable
    from gitops.source.load import ParseCache

    metrics = Metrics()
    health = Health()
    stop, wake = threading.Event(), threading.Event()
    state_path = state_dir / "loop.json"
    state = LoopState.load(state_path)
    notifier = notifier_from_settings(settings)
    if settings.leader_election.enabled:  # a replica that does not lead sends nothing
        from gitops.daemon.fencing import FencedNotifier

        notifier = FencedNotifier(notifier)
    tracker = EscalationTracker(notifier, settings.notify.after_failures, state.escalation)
    try:
        pass_fn = default_pass(settings, ParseCache(state_dir / "parse-cache.pickle"), strict=args.strict, stop=stop)
    except (BackendsUnavailable, StoreError) as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        return 1
    try:
        return _serve(args, settings, state_dir, pass_fn, metrics, health, stop, wake, state, state_path, tracker)
    finally:
        pass_fn.close()  # the backends and stores, whatever ended the daemon


def _serve(
    args: argparse.Namespace, settings: Settings, state_dir: Path, pass_fn: DaemonPass, metrics: Metrics,
    health: Health, stop: threading.Event, wake: threading.Event, state: LoopState, state_path: Path,
    tracker: EscalationTracker,
) -> int:
    from gitops.daemon.logs import event
    from gitops.daemon.pollers import DirectoryPoller, GitPoller, PollOutcome, watch_directory
    from gitops.daemon.reconciler import Reconciler
    from gitops.daemon.runner import Daemon
    from gitops.daemon.server import HttpServer
    from gitops.settings.load import SecretError, optional_secret
    from gitops.source.git import GitAuth, GitSource, GitSourceError
    from gitops.source.signatures import SignatureVerifier
    from gitops.status.store import DirectoryStatusStore, GitStatusStore, StatusStore

    try:
        webhook_secret = optional_secret(settings.source.webhook_secret_env, settings.source.webhook_secret_file,
                                         key="source.webhook_secret")
    except SecretError as exc:
        return _fail([exc.diagnostic], args.color)
    from gitops.daemon.leader import elector_from_settings
    from gitops.daemon.replica import replica_from_settings

    try:  # before anything starts: a bad setting stops the command, not a half-started daemon
        leader = elector_from_settings(settings)
        replica = replica_from_settings(settings, leader, on_restore=lambda: reload_state())
    except ValueError as exc:
        print(f"hiclaw-gitops: leader_election: {exc}", file=sys.stderr)
        return 1
    if leader is not None and replica is None:
        event(logging.WARNING, "leader election without state replication: a replica that takes over plans "
              "against its own state directory (set leader_election.replicate_state: true; docs/kubernetes.md)")

    poll: Callable[[], PollOutcome]
    if args.watch:
        store: StatusStore | None = DirectoryStatusStore(state_dir / "status") if settings.status.enabled else None
        reconciler = Reconciler(settings, pass_fn, store=store, metrics=metrics, tracker=tracker, state=state,
                                state_path=state_path, source_label=str(Path(args.watch).resolve()))
        poller = DirectoryPoller(Path(args.watch) / settings.source.path if settings.source.path else args.watch,
                                 reconciler, store)
        health.set_ready(True)
        poll = poller.poll
    else:
        try:
            source = GitSource(
                settings.source.url, settings.source.branch, state_dir / "git",
                auth=GitAuth.from_settings(settings.source), depth=settings.source.depth,
                timeout=settings.source.timeout, known_hosts=settings.source.ssh_known_hosts,
            )
        except (GitSourceError, SecretError) as exc:
            return _fail([exc.diagnostic], args.color)
        status_class = GitStatusStore
        if leader is not None:  # a replica that does not lead records no status
            from gitops.daemon.fencing import FencedStatusStore

            status_class = FencedStatusStore
        git_store = status_class(source, settings.status) if settings.status.enabled else None
        reconciler = Reconciler(settings, pass_fn, store=git_store, metrics=metrics, tracker=tracker, state=state,
                                state_path=state_path, source_label=source.label)
        git_poller = GitPoller(source, reconciler, git_store, verifier=SignatureVerifier.from_settings(settings.source),
                               health=health)
        poll = git_poller.poll

    event(logging.INFO, "starting", source=args.watch or (settings.source.url and reconciler.source_label),
          state_dir=str(state_dir), once=bool(args.once), status=settings.status.enabled)
    listen = settings.status.listen if args.listen is None else args.listen
    if args.once and args.listen is None:
        listen = ""
    server: HttpServer | None = None
    if listen:
        try:
            server = HttpServer(listen, health=health, metrics=metrics, wake=wake, webhook_secret=webhook_secret,
                                branch=settings.source.branch).start()
        except (OSError, ValueError) as exc:
            print(f"hiclaw-gitops: cannot listen on {listen}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 1
    from gitops.daemon.chatops import attach

    def leads_with_state() -> bool:  # only the leader reads the room and answers, once its state is restored
        return leader is not None and leader.leading() and (replica is None or replica.ready())

    # Commands in the admin's room (docs/chatops.md).
    chat = attach(settings, reconciler, poller if args.watch else git_poller, wake=wake, stop=stop,
                  listen=not args.once, gate=leads_with_state if leader is not None else None)
    if chat is not None:
        poll = partial(chat.poll, poll)

    def reload_state() -> None:
        """The state directory was restored from the cluster: what this process keeps in memory follows."""
        from gitops.daemon.loopstate import LoopState

        fresh = LoopState.load(state_path)
        for name in LoopState.__dataclass_fields__:
            setattr(state, name, getattr(fresh, name))
        tracker.notified = dict(state.escalation)
        if chat is not None:
            chat.reload()
        if not args.watch:
            git_poller.force_next = state.last_result in ("Refused", "Failed")

    if replica is not None:
        pass_fn.during = replica.during  # at most every replicate_interval seconds during a long pass
    if leader is not None:
        leader.start()  # campaigns in its own thread; the daemon polls only while this replica leads
    daemon = Daemon(poll, interval=settings.source.poll_interval, jitter=settings.source.jitter,
                    backoff_max=settings.source.backoff_max, health=health, stop=stop, wake=wake, leader=leader,
                    prepare=replica.prepare if replica is not None else None,
                    after_poll=replica.publish if replica is not None else None)
    if args.watch:
        watch_directory(args.watch, wake, stop)
    try:
        with daemon.signals():
            code = daemon.run(once=args.once)
        if args.once and code == 0 and state.last_result in FAILED_RESULTS:
            print(f"hiclaw-gitops: the commit {state.last_commit[:12]} was not reconciled: {state.last_result}",
                  file=sys.stderr)
            return 1
        return code
    finally:
        stop.set()
        if replica is not None:
            replica.publish()  # the last pass's state, before the lease is handed over
            replica.close()
        if leader is not None:
            leader.stop()  # hands the lease over at once
        if chat is not None:
            chat.close()
        if server is not None:
            server.stop()
