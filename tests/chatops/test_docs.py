"""docs/chatops.md says what the code does: every command in its table, and the demo's suggested mass deletion
(`deploy/demo.sh --serve` prints it) leaves a valid example org that the prune guard stops."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from deploy.demo import mass_deletion
from gitops.daemon.chatops_commands import COMMANDS
from gitops.pipeline import baseline_of, plan, read_org
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "chatops.md").read_text(encoding="utf-8")


def test_the_command_table_lists_every_command_and_no_other() -> None:
    table = re.findall(r"^\| `!gitops (\w+)", DOC, re.MULTILINE)
    assert sorted(table) == sorted(COMMANDS)
    assert "Not covered yet" not in DOC and "## Out of scope" in DOC


def test_the_demos_suggested_deletion_of_the_example_org_is_valid_and_guarded(tmp_path: Path) -> None:
    org = tmp_path / "org"
    shutil.copytree(ROOT / "example-org", org)
    gone = mass_deletion(org)
    assert gone == "teams humans"
    for folder in gone.split():
        shutil.rmtree(org / folder)
    settings = Settings()
    before = baseline_of(read_org(DirectorySource(ROOT / "example-org")), settings, "directory")
    after = read_org(DirectorySource(org))
    assert after.ok, [d.message for d in after.validation.diagnostics]
    guard = plan(after, settings, before, all_providers=True).guard
    assert guard["tripped"] and guard["tripped_by"] == ["prune"] and len(guard["deleted_agents"]) == 7
