"""Terminal view of a plan: rendered from `Plan.to_dict()`, symbol in the first column, one closing count line.

Layout (every line of a change starts with its symbol, so the markdown view can reuse it in a ```diff block):

    + runtime/container/hiclaw-worker-alice  # declared, not present (Worker/alice)
    +   image: "hiclaw/worker-agent:latest"
    ~ matrix/room/hiclaw-team-frontend-team  # members changed (Team/frontend-team)
    +   members: "@bob:matrix-local.hiclaw.io:8080"
    ~   name: "Team: a" → "Team: b"

The closing line is exactly `No changes.` or `Plan: N to create, M to update, K to delete.`; the clause
`R to replace, ` appears before the delete count only when a change is a replacement (docs/plan-format.md).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

PlanDict = Mapping[str, Any]

SYMBOLS = {"create": "+", "update": "~", "replace": "±", "delete": "-"}
SUMMARY_SYMBOLS = {"created": "+", "updated": "~", "deleted": "-", "affected": "*"}
OPS = {"add": "+", "remove": "-", "change": "~"}

MAX_CONTENT_LINES = 20  # lines shown of a multi-line value that is added or removed
MAX_DIFF_LINES = 40  # lines shown of a unified diff between two multi-line values
MAX_INLINE = 240  # characters shown of a single-line value
MAX_CREATED_FIELDS = 24  # fields shown of a created object; the JSON has them all
DIFF_CONTEXT = 2

ITEM_INDENT = "   "  # after the symbol: `+   path: value`
CONTENT_INDENT = "       "  # after the symbol: `+       line of a file`

_ANSI = {"+": "\033[32m", "-": "\033[31m", "~": "\033[33m", "±": "\033[36m", "@": "\033[36m", "*": "\033[36m"}
_BOLD, _DIM, _RESET = "\033[1m", "\033[2m", "\033[0m"


# Fixed phrases --------------------------------------------------------------------------------------------


def closing_line(counts: Mapping[str, int]) -> str:
    """`No changes.` or `Plan: N to create, M to update, [R to replace, ]K to delete.`"""
    create, update = counts.get("create", 0), counts.get("update", 0)
    replace, delete = counts.get("replace", 0), counts.get("delete", 0)
    if not (create or update or replace or delete):
        return "No changes."
    middle = f"{replace} to replace, " if replace else ""
    return f"Plan: {create} to create, {update} to update, {middle}{delete} to delete."


def disabled_providers(plan: PlanDict) -> list[tuple[str, str]]:
    """(provider, why) for each provider the plan did not cover, in the plan's order."""
    out = []
    for provider, state in plan.get("providers", {}).items():
        if state != "enabled":
            out.append((provider, str(state).removeprefix("disabled").lstrip(": ") or "disabled"))
    return out


def compared_phrase(plan: PlanDict) -> str:
    """`main@1a2b3c4 (commit)`: the base and what kind of baseline it is."""
    return f"{plan.get('base') or '-'} ({plan.get('compared_against') or 'unknown'})"


def channel_phrase(channel: str) -> str:
    """A room alias as it is; `dm` (the access report's direct-message channel) in words."""
    return "direct messages" if channel == "dm" else channel


ACCESS_NAMES = 5  # names shown per set change; the JSON has them all
ACCESS_LINES = 40  # principals, rooms and agents shown per section; the JSON has them all


def set_phrase(change: Mapping[str, Any], limit: int = ACCESS_NAMES) -> str:
    """`+a, +b, −c (and 4 more)` for a set change, a bounded number of names."""
    names = [f"+{n}" for n in change.get("added") or ()] + [f"−{n}" for n in change.get("removed") or ()]
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" (and {more} more)" if more > 0 else "")


def access_groups(access: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """The access section in readable groups: a summary per principal first, then the set changes per room
    (members, power 100) and per agent (who may address it in groups and by DM) — each bounded."""
    out: list[tuple[str, list[str]]] = []
    principals = [f"~ {p['summary']}" for p in access.get("principals") or ()]
    if principals:
        actor = (access.get("actor") or {}).get("id")
        tail = [f"  (actor {actor}: in every managed room, exempt from the rules)"] if actor else []
        out.append(("by principal", _bounded_lines(principals, "principals") + tail))
    rooms = []
    for room in access.get("rooms") or ():
        line = f"{room['room']}{' (private)' if room.get('private') else ''}: "
        parts = []
        if room["members"]["added"] or room["members"]["removed"]:
            parts.append("members " + set_phrase(room["members"]))
        if room["power"]["added"] or room["power"]["removed"]:
            parts.append("power 100 " + set_phrase(room["power"]))
        rooms.append(line + "; ".join(parts))
    if rooms:
        out.append(("rooms", _bounded_lines(rooms, "rooms")))
    agents = []
    for agent in access.get("agents") or ():
        parts = [f"{word} {set_phrase(agent[key])}" for key, word in (("group", "group"), ("dm", "DM"))
                 if agent[key]["added"] or agent[key]["removed"]]
        agents.append(f"{agent['agent']} accepts: " + "; ".join(parts))
    if agents:
        out.append(("allow-lists", _bounded_lines(agents, "agents")))
    return out


def _bounded_lines(lines: list[str], what: str, limit: int = ACCESS_LINES) -> list[str]:
    more = len(lines) - limit
    return lines[:limit] + ([f"… and {more} more {what} (in --format json)"] if more > 0 else [])


def summary_line(summary: Mapping[str, Any]) -> str:
    details = "; ".join(summary.get("details") or ())
    status = summary["status"]
    text = status if not details else (details if status == "updated" else f"{status} ({details})")
    return f"{SUMMARY_SYMBOLS.get(status, '*')} {summary['ref']}: {text}"


# Values and diffs -----------------------------------------------------------------------------------------


def fmt_value(value: Any) -> str:
    """One-line rendering of a JSON value: strings quoted, containers as compact JSON, long values cut."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    if len(text) > MAX_INLINE:
        return f"{text[: MAX_INLINE - 1]}… ({len(text)} chars)"
    return text


def _multiline(value: Any) -> bool:
    return isinstance(value, str) and "\n" in value.rstrip("\n")


def _records(value: Any) -> bool:
    """A non-empty list of mappings (policy statements, ports): shown item by item, never cut as one line."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _flatten(path: str, value: Any) -> list[tuple[str, Any]]:
    """Mappings (and lists of mappings, by index) unfold into one entry per leaf path, so an added subtree reads
    like the rest of the diff and a policy's statements can be reviewed line by line."""
    if isinstance(value, Mapping) and value:
        out: list[tuple[str, Any]] = []
        for k in sorted(value, key=str):
            out.extend(_flatten(f"{path}.{k}" if path else str(k), value[k]))
        return out
    if _records(value):
        return [leaf for i, item in enumerate(value) for leaf in _flatten(f"{path}[{i}]", item)]
    return [(path, value)]


def _leaf_changes(path: str, old: Any, new: Any) -> list[str]:
    """A changed subtree as the leaves that changed: removed, added, or old → new."""
    before, after = dict(_flatten(path, old)), dict(_flatten(path, new))
    out: list[str] = []
    for leaf in sorted(before.keys() | after.keys()):
        if leaf not in after:
            out.extend(_leaf_lines("-", leaf, before[leaf]))
        elif leaf not in before:
            out.extend(_leaf_lines("+", leaf, after[leaf]))
        elif before[leaf] != after[leaf]:
            out.append(f"~{ITEM_INDENT}{leaf}: {fmt_value(before[leaf])} → {fmt_value(after[leaf])}")
    return out


def _content_lines(sym: str, text: str, limit: int) -> list[str]:
    lines = text.splitlines()
    out = [f"{sym}{CONTENT_INDENT}{line}".rstrip() for line in lines[:limit]]
    if len(lines) > limit:
        out.append(f" {CONTENT_INDENT}… {len(lines) - limit} more lines")
    return out


def _unified(old: str, new: str) -> list[str]:
    raw = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=DIFF_CONTEXT))[2:]
    out: list[str] = []
    for line in raw[:MAX_DIFF_LINES]:
        if line.startswith("@@"):
            out.append(f" {CONTENT_INDENT}{line}")
        else:
            out.append(f"{line[:1]}{CONTENT_INDENT}{line[1:]}".rstrip())
    if len(raw) > MAX_DIFF_LINES:
        out.append(f" {CONTENT_INDENT}… {len(raw) - MAX_DIFF_LINES} more diff lines")
    return out


def _leaf_lines(sym: str, path: str, value: Any) -> list[str]:
    if _multiline(value):
        head = f"{sym}{ITEM_INDENT}{path}: ({len(value.splitlines())} lines)"
        return [head, *_content_lines(sym, value, MAX_CONTENT_LINES)]
    return [f"{sym}{ITEM_INDENT}{path}: {fmt_value(value)}"]


def diff_item_lines(item: Mapping[str, Any]) -> list[str]:
    op, path, old, new = item["op"], item["path"] or "(value)", item.get("old"), item.get("new")
    if op == "add":
        return [line for p, v in _flatten(path, new) for line in _leaf_lines("+", p, v)]
    if op == "remove":
        return [line for p, v in _flatten(path, old) for line in _leaf_lines("-", p, v)]
    if isinstance(old, str) and isinstance(new, str) and (_multiline(old) or _multiline(new)):
        return [f"~{ITEM_INDENT}{path}:", *_unified(old, new)]
    if (_records(old) or isinstance(old, Mapping)) and (_records(new) or isinstance(new, Mapping)):
        return _leaf_changes(path, old, new)
    return [f"~{ITEM_INDENT}{path}: {fmt_value(old)} → {fmt_value(new)}"]


def change_header(change: Mapping[str, Any]) -> str:
    sym = SYMBOLS.get(change["action"], "?")
    return f"{sym} {change['key']}  # {change['reason']} ({change['owner']})"


def change_lines(change: Mapping[str, Any], diffs: bool = True) -> list[str]:
    """A change's header and, with diffs, its body: the diff items, or every field of a created object."""
    lines = [change_header(change)]
    if not diffs:
        return lines
    if change["action"] == "create" and isinstance(change.get("after"), Mapping):
        fields = _flatten("", change["after"])
        for path, value in fields[:MAX_CREATED_FIELDS]:
            lines.extend(_leaf_lines("+", path, value))
        if len(fields) > MAX_CREATED_FIELDS:
            lines.append(f"+{ITEM_INDENT}… {len(fields) - MAX_CREATED_FIELDS} more fields (in --format json)")
    else:
        for item in change.get("diff") or ():
            lines.extend(diff_item_lines(item))
    return lines


def by_owner(changes: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """Changes grouped by the org resource that owns them (`org` for shared objects last), in plan order within
    a group."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for change in changes:
        groups.setdefault(str(change.get("owner") or "org"), []).append(change)
    return sorted(groups.items(), key=lambda kv: (kv[0] == "org", kv[0]))


def owner_heading(owner: str, changes: Sequence[Mapping[str, Any]]) -> str:
    """`Worker/alice: 7 changes (+7)` — how many of which action."""
    counts: dict[str, int] = {}
    for change in changes:
        counts[change["action"]] = counts.get(change["action"], 0) + 1
    tally = " ".join(f"{SYMBOLS[a]}{counts[a]}" for a in SYMBOLS if counts.get(a))
    n = len(changes)
    return f"{owner}: {n} change{'' if n == 1 else 's'} ({tally})"


# The view -------------------------------------------------------------------------------------------------

# Each rendered line carries its kind, so colour follows structure, never the text of a line.
Line = tuple[str, str]  # (kind, text): title | plain | entry | change | warn | close


def render(plan: PlanDict, color: bool = False) -> str:
    out: list[Line] = []
    out.append(("plain", f"Head:      {plan.get('head') or '-'}"))
    out.append(("plain", f"Base:      {compared_phrase(plan)}"))
    if plan.get("compared_against") == "live":
        out.append(("plain", f"Observed:  fingerprint {plan.get('fingerprint')}"))
    disabled = disabled_providers(plan)
    if disabled:
        out.append(("plain", "Disabled:  " + ", ".join(f"{p} ({why})" for p, why in disabled)))
    if plan.get("unchanged"):
        n = plan["unchanged"]
        out.append(("plain", f"Unchanged: {n} object{'' if n == 1 else 's'}"))

    summaries = plan.get("summaries") or []
    if summaries:
        out += [("plain", ""), ("title", "Org changes:")]
        out += [("entry", "  " + summary_line(s)) for s in summaries]

    groups = access_groups(plan.get("access") or {})
    if groups:
        out += [("plain", ""), ("title", "Access changes (who can address whom):")]
        for where, lines in groups:
            out.append(("plain", f"  {where}:"))
            out += [("entry", f"    {line}") for line in lines]

    changes = plan.get("changes") or []
    if changes:
        out += [("plain", ""), ("title", "Object changes, by org resource:")]
        for owner, group in by_owner(changes):
            out += [("plain", ""), ("title", owner_heading(owner, group))]
            for change in group:
                out += [("plain", ""), *(("change", line) for line in change_lines(change))]

    warnings = plan.get("warnings") or []
    if warnings:
        out += [("plain", ""), ("title", "Warnings:")]
        out += [("warn", f"  ! {w}") for w in warnings]
    guard = plan.get("guard") or {}
    if guard.get("tripped"):
        out += [("plain", ""), ("warn", f"{guard_title(guard)} tripped: apply refuses this plan without "
                                        "--allow-mass-delete.")]
        for what, agents in guard_agents(guard):
            out.append(("warn", f"  agents {what}: " + ", ".join(agents)))

    out += [("plain", ""), ("close", closing_line(plan.get("counts") or {}))]
    return "\n".join(_paint(kind, text) if color else text for kind, text in out) + "\n"


def guard_title(guard: Mapping[str, Any]) -> str:
    """`Prune guard`, `State guard`, or `Prune and state guards`: which guard stopped the plan (a plan made
    before the state guard existed names none: the prune guard)."""
    names = list(guard.get("tripped_by") or ("prune",))
    return f"{names[0].capitalize()} guard" if len(names) == 1 else f"{names[0].capitalize()} and {names[1]} guards"


def guard_agents(guard: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """The agents each guard counted: deleted (prune), stopped or put to sleep (state)."""
    lists = (("deleted", guard.get("deleted_agents")), ("stopped or put to sleep", guard.get("stopped_agents")))
    return [(what, list(agents)) for what, agents in lists if agents]


def _paint(kind: str, text: str) -> str:
    """ANSI colour for one line: green create/add, yellow update, red delete/remove, cyan replace."""
    if kind in ("title", "close"):
        return f"{_BOLD}{text}{_RESET}"
    if kind == "warn":
        return f"\033[33m{text}{_RESET}"
    if kind == "entry":
        body = text.lstrip(" ")
        indent = text[: len(text) - len(body)]
        return f"{indent}{_ANSI[body[0]]}{body}{_RESET}" if body[:1] in _ANSI else text
    if kind == "change" and text:
        sym, rest = text[0], text[1:]
        if sym == " ":
            stripped = rest.lstrip(" ")
            if stripped.startswith("@@"):
                return f"{_ANSI['@']}{text}{_RESET}"
            return f"{_DIM}{text}{_RESET}" if stripped.startswith("…") else text
        colour = _ANSI.get(sym, "")
        if rest.startswith(" ") and not rest.startswith(ITEM_INDENT) and "  # " in rest:
            head, _, reason = text.partition("  # ")
            return f"{colour}{_BOLD}{head}{_RESET}  {_DIM}# {reason}{_RESET}"
        return f"{colour}{text}{_RESET}"
    return text
