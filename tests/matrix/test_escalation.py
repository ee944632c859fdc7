"""Escalation (SPEC §6, tier 3) on a real Synapse: a failure is posted once to the Manager DM in the uniform
format, a repeat of the same failure is not, and a recovery message follows when it clears."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

from mxsite import EXAMPLE_ORG, Inspector, Site

from deploy.synapse import Synapse
from gitops.daemon.notify import EscalationTracker, Failure, RoomNotifier, notifier_from_settings


def test_failure_and_recovery_are_posted_once_each(homeserver: Synapse, tmp_path: Path) -> None:
    org = tmp_path / "org-src"
    org.mkdir()
    shutil.copy(EXAMPLE_ORG / "manager.yaml", org / "manager.yaml")
    site = Site(homeserver, tmp_path, org)
    try:
        site.reconcile()
        notifier = notifier_from_settings(site.settings)
        assert isinstance(notifier, RoomNotifier) and notifier.room == "#hiclaw-manager-default:localhost"
        tracker = EscalationTracker(notifier, after_failures=2)
        failing = {"Worker/alice": Failure("create runtime/container/hiclaw-worker-alice: image missing", 2)}
        assert len(tracker.observe(failing, "0123456789abcdef")) == 1
        assert tracker.observe(failing, "0123456789abcdef") == []  # the same failure: not again
        assert [m.kind for m in tracker.observe({}, "fedcba9876543210")] == ["recovery"]
        inspector = Inspector(homeserver)
        room = inspector.rooms()["hiclaw-manager-default"][0].room_id
        events = inspector.get(f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room)}/messages?dir=b&limit=50")
        bodies = [e["content"]["body"] for e in events["chunk"]
                  if e["type"] == "m.room.message" and e["content"].get("msgtype") == "m.notice"]
        assert len(bodies) == 2
        recovery, failure = bodies
        assert failure.splitlines() == [
            "🚨 hiclaw-gitops: Worker/alice is failing",
            "Resource: Worker/alice",
            "Commit: 0123456789ab",
            "Error: create runtime/container/hiclaw-worker-alice: image missing",
            "Attempts: 2",
            failure.splitlines()[-1],
        ]
        assert failure.splitlines()[-1].startswith("What to do: ")
        assert recovery.splitlines()[0] == "✅ hiclaw-gitops: Worker/alice recovered"
        notifier.close()
    finally:
        site.close()
