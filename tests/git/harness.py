"""An in-process daemon over a real repository: the same objects `hiclaw-gitops run` wires together."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from gitops.daemon.loopstate import LoopState
from gitops.daemon.metrics import Metrics
from gitops.daemon.notify import EscalationTracker, Message
from gitops.daemon.passes import default_pass
from gitops.daemon.pollers import GitPoller
from gitops.daemon.reconciler import Pass, Reconciler
from gitops.settings.model import Settings, SourceSettings, StatusSettings
from gitops.source.git import GitSource
from gitops.source.signatures import SignatureVerifier
from gitops.status.store import GitStatusStore


@dataclass
class ListNotifier:
    """Keeps escalation messages for the test to read."""

    sent: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.sent.append(message)


def settings_for(url: str, state_dir: Path, *, status: StatusSettings | None = None, **source: object) -> Settings:
    return Settings(
        source=replace(SourceSettings(url=url), **source),  # type: ignore[arg-type]
        state_dir=str(state_dir),
        status=status or StatusSettings(),
    )


def make_poller(
    settings: Settings,
    *,
    pass_fn: Pass | None = None,
    notifier: ListNotifier | None = None,
    state: LoopState | None = None,
) -> tuple[GitPoller, ListNotifier]:
    state_dir = Path(settings.state_dir)
    source = GitSource(settings.source.url, settings.source.branch, state_dir / "git", depth=settings.source.depth)
    store = GitStatusStore(source, settings.status) if settings.status.enabled else None
    notifier = notifier or ListNotifier()
    tracker = EscalationTracker(notifier, settings.notify.after_failures)
    reconciler = Reconciler(
        settings, pass_fn or default_pass(settings), store=store, metrics=Metrics(), tracker=tracker,
        state=state or LoopState.load(state_dir / "loop.json"), state_path=state_dir / "loop.json",
        source_label=source.label,
    )
    poller = GitPoller(source, reconciler, store, verifier=SignatureVerifier.from_settings(settings.source))
    return poller, notifier
