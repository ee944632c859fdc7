"""The daemon's run loop: polls on a timer with jitter, on webhook or file-watch wake-ups, with backoff.

SIGTERM and SIGINT let the poll in flight finish, then the loop exits.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Protocol

from gitops.daemon.health import Health
from gitops.daemon.logs import event, log
from gitops.daemon.pollers import PollOutcome
from gitops.settings.load import REDACTOR


def next_wait(interval: float, jitter: float, failures: int, backoff_max: float,
              rand: Callable[[], float] = random.random) -> float:
    """Seconds until the next poll: the interval ± jitter, doubled per consecutive failure up to backoff_max."""
    base = interval if failures == 0 else min(backoff_max, interval * (2 ** min(failures, 30)))
    spread = base * jitter
    return max(0.0, base + (rand() * 2 - 1) * spread)


class Leadership(Protocol):
    """A leader election (gitops.daemon.leader.LeaderElector): whether this process may write now."""

    def leading(self) -> bool: ...


STANDBY_WAIT = 1.0  # seconds between a standby's looks at its leadership


class Daemon:
    """Runs polls until stopped: on a timer with jitter, on webhook or file-watch wake-ups, with backoff.
    With a `leader`, polls only while this process leads; a standby waits and says so in /readyz. `prepare` is
    asked before every poll and must say True first (state replication restores a new leader's state there:
    cheap once done); `after_poll` runs after each (it publishes the state a pass changed)."""

    def __init__(
        self,
        poll: Callable[[], PollOutcome],
        *,
        interval: float,
        jitter: float = 0.1,
        backoff_max: float = 300.0,
        health: Health | None = None,
        stop: threading.Event | None = None,
        wake: threading.Event | None = None,
        leader: Leadership | None = None,
        prepare: Callable[[], bool] | None = None,
        after_poll: Callable[[], object] | None = None,
    ) -> None:
        self.poll = poll
        self.interval = interval
        self.jitter = jitter
        self.backoff_max = backoff_max
        self.health = health or Health()
        self.stop = stop or threading.Event()
        self.wake = wake or threading.Event()
        self.failures = 0
        self.polls = 0
        self.leader = leader
        self.prepare = prepare
        self.after_poll = after_poll

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None and not self.stop.is_set():
            event(logging.INFO, "stopping: the pass in flight finishes first", signal=signal.Signals(signum).name)
        self.stop.set()
        self.wake.set()

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the loop gracefully (only possible from the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def run(self, once: bool = False) -> int:
        """Poll until stopped (then 0); with once=True, exactly one poll: 0 if it succeeded, else 1."""
        outcome = PollOutcome.UNCHANGED
        try:
            while not self.stop.is_set():
                self.health.beat()
                self.wake.clear()
                if not self._leads() or not self._prepared():
                    self.wake.wait(min(STANDBY_WAIT, self.interval))
                    continue
                outcome = self._poll()
                self._after_poll()
                self.polls += 1
                self.failures = self.failures + 1 if outcome.failed else 0
                if once:
                    break
                wait = next_wait(self.interval, self.jitter, self.failures, self.backoff_max)
                if self.failures:
                    event(logging.INFO, "backing off", failures=self.failures, seconds=round(wait, 2))
                self.wake.wait(wait)
        finally:
            self.health.loop_alive = False
        event(logging.INFO, "stopped", polls=self.polls)
        return 1 if once and outcome.failed else 0

    def _leads(self) -> bool:
        if self.leader is None:
            return True
        leading = self.leader.leading()
        if leading != self.health.leading:
            self.health.set_leading(leading)
            event(logging.INFO, "leading: polls run here" if leading else "standing by: another replica leads")
            if not leading:  # ready again after the first poll as leader
                self.health.set_ready(False, "standby: another replica holds the leader lease")
        return leading

    def _prepared(self) -> bool:
        if self.prepare is None:
            return True
        try:
            ready = self.prepare()
        except Exception as exc:  # same as a refusal: not ready, asked again
            log.exception("preparing the pass failed", extra={"fields": {"error": REDACTOR.redact(str(exc))}})
            ready = False
        if not ready:
            self.health.set_ready(False, "the replicated state is not restored yet; retrying")
        return ready

    def _after_poll(self) -> None:
        if self.after_poll is None:
            return
        try:
            self.after_poll()
        except Exception as exc:  # publishing state never stops the daemon; the next poll tries again
            log.exception("after the poll", extra={"fields": {"error": REDACTOR.redact(str(exc))}})

    def _poll(self) -> PollOutcome:
        try:
            return self.poll()
        except Exception as exc:  # keep the daemon alive; the next poll retries with backoff
            log.exception("poll failed", extra={"fields": {"error": REDACTOR.redact(str(exc))}})
            return PollOutcome.ERROR
