"""Reading a message as a command (pure): the prefix, case, arguments, approval IDs, replies' quoted fallback."""

from __future__ import annotations

import pytest

from gitops.daemon.chatops import without_fallback
from gitops.daemon.chatops_commands import COMMANDS, BadCommand, Command, addressed, help_text, parse


@pytest.mark.parametrize(("body", "text"), [
    ("!gitops status", "status"), ("!GitOps   STATUS alice ", "STATUS alice"), ("!gitops", ""),
    ("!gitops: sync", "sync"), ("hello !gitops status", None), ("!gitopsstatus", None), ("status", None),
])
def test_only_messages_with_the_prefix_are_addressed(body: str, text: str | None) -> None:
    assert addressed(body, "!gitops") == text


def test_an_empty_prefix_makes_every_message_a_command() -> None:
    assert addressed("  sync ", "") == "sync"


@pytest.mark.parametrize(("text", "command"), [
    ("STATUS", Command("status")), ("status Worker/alice", Command("status", ("Worker/alice",))),
    ("approve k7q2m9", Command("approve", ("K7Q2M9",))), ("Reject K7Q2M9", Command("reject", ("K7Q2M9",))),
])
def test_commands_are_case_insensitive(text: str, command: Command) -> None:
    assert parse(text, "!gitops") == command


@pytest.mark.parametrize(("text", "reply"), [
    ("", "a command is missing"), ("frobnicate", "unknown command `frobnicate`"),
    ("sync now", "`sync` takes no argument"), ("approve", "`approve` takes one argument"),
    ("approve A B", "takes one argument"), ("approve 0OI1XX", "is not an approval ID"),
    ("status " + "x" * 300, "too long"),
])
def test_bad_input_gets_a_clear_reply(text: str, reply: str) -> None:
    with pytest.raises(BadCommand) as caught:
        parse(text, "!gitops")
    assert reply in str(caught.value)


def test_help_lists_every_command() -> None:
    text = help_text("!gitops")
    assert all(f"!gitops {form}" in text for _, _, form, _ in COMMANDS.values())


def test_a_reply_is_read_after_the_quote_its_client_put_first() -> None:
    body = "> <@hiclaw-gitops:hs> 🛑 hiclaw-gitops: the prune guard stopped commit abc\n> Why: …\n\n!gitops approve"
    assert without_fallback(body) == "!gitops approve"
    assert without_fallback("!gitops status") == "!gitops status"
