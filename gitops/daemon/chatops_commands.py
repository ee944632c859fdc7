"""Chat commands (docs/chatops.md): parsing a message of the admin's room into one command, and the help text.

Pure: no I/O. A message is for the reconciler when it starts with the prefix (`!gitops` by default; case-insensitive);
everything else in the room is conversation and is left alone. What follows the prefix is one command with its
arguments; a wrong word or a wrong number of arguments is a `BadCommand` whose text is the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# name -> (minimum arguments, maximum arguments, usage, what it does)
COMMANDS: dict[str, tuple[int, int, str, str]] = {
    "help": (0, 0, "help", "this list"),
    "status": (0, 1, "status [NAME]", "the last run, or one resource (a name or Kind/name)"),
    "plan": (0, 0, "plan", "the last plan's summary and an excerpt"),
    "sync": (0, 0, "sync", "poll the repository now and reconcile its head"),
    "drift": (0, 0, "drift", "plan the last reconciled commit against live state now"),
    "suspend": (0, 0, "suspend", "stop applying (planning and status go on)"),
    "resume": (0, 0, "resume", "apply again"),
    "approve": (1, 1, "approve ID", "apply the plan a guard stopped, once"),
    "reject": (1, 1, "reject ID", "drop the plan a guard stopped"),
}
# Commands that change what the reconciler does (the others only read).
ACTING = frozenset({"sync", "drift", "suspend", "resume", "approve", "reject"})
APPROVAL_ID = re.compile(r"^[A-Z2-9]{6}$")
MAX_COMMAND_CHARS = 200


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return " ".join((self.name, *self.args))


class BadCommand(ValueError):
    """A message for the reconciler that is not a command it knows; the text is the reply."""


def addressed(body: str, prefix: str) -> str | None:
    """What follows the prefix when `body` is addressed to the reconciler, else None."""
    text = body.strip()
    if not prefix:
        return text
    if text.lower() == prefix.lower():
        return ""
    head, _, rest = text.partition(" ")
    if head.lower() != prefix.lower() and head.lower().rstrip(":,") != prefix.lower():
        return None
    return rest.strip()


def parse(text: str, prefix: str) -> Command:
    """One command from the text after the prefix; BadCommand (with the reply) when it is not one."""
    usage = f"{prefix} help".strip()
    if len(text) > MAX_COMMAND_CHARS:
        raise BadCommand(f"that message is too long for a command; try `{usage}`")
    words = text.split()
    if not words:
        raise BadCommand(f"a command is missing; try `{usage}`")
    name, args = words[0].lower(), tuple(words[1:])
    if name not in COMMANDS:
        shown = name if len(name) <= 30 else name[:30] + "…"
        raise BadCommand(f"unknown command `{shown}`; try `{usage}`")
    low, high, form, _ = COMMANDS[name]
    if not low <= len(args) <= high:
        raise BadCommand(f"`{name}` takes {'no argument' if high == 0 else 'one argument'}: `{prefix} {form}`".replace(
            "  ", " "))
    if name in ("approve", "reject"):
        args = (args[0].upper(),)
        if not APPROVAL_ID.match(args[0]):
            raise BadCommand(f"`{args[0][:20]}` is not an approval ID (six letters and digits, as in the message "
                             "that asked for approval)")
    return Command(name, args)


def help_text(prefix: str) -> str:
    lead = f"{prefix} " if prefix else ""
    lines = ["hiclaw-gitops commands (plain text, case-insensitive):"]
    lines += [f"• {lead}{form} — {what}" for _, _, form, what in COMMANDS.values()]
    return "\n".join(lines)
