"""Saved plans: `plan --out FILE` writes one, `apply FILE` reads it back and refuses it once it is stale."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from gitops.objects import DesiredState, canonical_json
from gitops.plan.model import Action, Plan, redact

_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode  # no indent: the C encoder


def dump_plan(plan: Mapping[str, Any]) -> str:
    """A plan dict as JSON text (see `iter_plan`)."""
    return "".join(iter_plan(plan))


def write_plan(plan: Mapping[str, Any], out: TextIO) -> None:
    """Write a plan as JSON piece by piece: a plan of 90,000 created objects is gigabytes of text, never held
    as one string (and one `write` of over 2 GiB is cut short by the kernel)."""
    for piece in iter_plan(plan):
        out.write(piece)


def iter_plan(plan: Mapping[str, Any]) -> Iterator[str]:
    """A plan dict as JSON text, keys sorted, in pieces. The top level and its mappings (access, counts, ...)
    are laid out one key per line and their lists one entry per line; each entry (a change, an agent's access
    change) is one compact line.

    Line-oriented rather than fully indented: a reviewer can grep and diff it change by change, and it is
    written by the standard library's C encoder (an indented dump falls back to pure Python, which took most
    of the time of a 90,000-object plan)."""
    yield from _layout(plan, "", 3)
    yield "\n"


def _layout(value: Any, indent: str, depth: int) -> Iterator[str]:
    inner = indent + "  "
    if isinstance(value, Mapping) and value and depth > 0:
        yield "{\n"
        for i, key in enumerate(sorted(value)):
            yield f",\n{inner}" if i else inner
            yield f"{_ENCODE(str(key))}: "
            yield from _layout(value[key], inner, depth - 1)
        yield "\n" + indent + "}"
    elif isinstance(value, (list, tuple)) and value and depth > 0:
        yield "[\n"
        for i, item in enumerate(value):
            yield f",\n{inner}" if i else inner
            yield _ENCODE(item)
        yield "\n" + indent + "]"
    else:
        yield _ENCODE(value)


class PlanFileError(ValueError):
    """The file is not a saved plan this version can apply."""


class StalePlan(Exception):
    """A saved plan no longer describes the world: the head commit or the observed state moved."""


def load_plan(path: str | Path) -> Plan:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanFileError(f"{path}: cannot read a saved plan: {exc}") from None
    if not isinstance(data, dict):
        raise PlanFileError(f"{path}: not a saved plan (expected a JSON object)")
    try:
        return Plan.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"{path}: not a saved plan ({type(exc).__name__}: {exc})") from None


def check_fresh(plan: Plan, head: str, fingerprint: str) -> None:
    """Refuse a saved plan whose head commit or observed-state fingerprint has moved since it was made."""
    if plan.head != head:
        raise StalePlan(
            f"the saved plan is stale: it was made for {plan.head}, but the head is now {head}; run `plan` again"
        )
    if plan.fingerprint != fingerprint:
        raise StalePlan(
            f"the saved plan is stale: the {plan.compared_against} state changed since it was made "
            f"(fingerprint {plan.fingerprint} → {fingerprint}); run `plan` again"
        )


def check_matches(plan: Plan, desired: DesiredState) -> None:
    """Every create/update/replace of the plan must be what the org at head compiles to (StalePlan if not)."""
    for change in plan.changes:
        if change.action in (Action.CREATE, Action.UPDATE, Action.REPLACE):
            obj = desired.objects.get(change.key)
            if obj is None or (change.after is not None and canonical_json(redact(obj.spec)) != canonical_json(
                    change.after)):
                raise StalePlan(
                    f"the saved plan is stale: {change.key} no longer compiles to the planned spec; run `plan` again"
                )
        elif change.action is Action.DELETE and change.key in desired.objects:
            raise StalePlan(f"the saved plan is stale: it deletes {change.key}, which is declared; run `plan` again")
