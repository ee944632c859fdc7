"""Pull-request comment view of a plan: summary, access table, warnings, a Mermaid diagram, collapsible details.

Rendered from `Plan.to_dict()`. The output never exceeds `LIMIT` characters (GitHub refuses comments above
65,536): every section before the details has its own budget, and the details give way first — diffs of
the largest changes are dropped, then whole changes from the end — with a note saying how many were left
out and that `hiclaw-gitops plan --format json` shows everything. The same plan always gives the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gitops.views import mermaid, text

PlanDict = Mapping[str, Any]

LIMIT = 60_000
MARKER = "<!-- hiclaw-gitops:plan -->"  # lets CI find and update its own comment
FULL_PLAN = "`hiclaw-gitops plan --format json`"

# Character budgets of the sections before the details; together well under LIMIT.
SUMMARY_BUDGET = 10_000
ACCESS_BUDGET = 10_000
WARNINGS_BUDGET = 4_000
DIAGRAM_BUDGET = 12_000
MAX_LINE = 1_000  # no single line of the comment is longer than this
NOTE_RESERVE = 600  # room kept for the truncation note

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def esc(value: str) -> str:
    """Markdown-escape free text (summary details, warnings) so it renders as written."""
    return _MD_SPECIAL.sub(r"\\\1", value)


def code(value: str, in_table: bool = False) -> str:
    """An inline code span that survives backticks (and pipes, inside a table)."""
    ticks = "``" if "`" in value else "`"
    pad = " " if ticks == "``" else ""
    body = value.replace("|", "\\|") if in_table else value
    return f"{ticks}{pad}{body}{pad}{ticks}"


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def _bounded(lines: Sequence[str], budget: int, what: str, prefix: str = "") -> list[str]:
    """As many lines as fit the budget, then one line saying how many more there are."""
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        line = _cut(line)
        if used + len(line) + 1 > budget:
            out += [prefix.rstrip(), f"{prefix}_… and {len(lines) - i} more {what}: see {FULL_PLAN}._"]
            break
        out.append(line)
        used += len(line) + 1
    return out


# Sections -------------------------------------------------------------------------------------------------


def _meta(plan: PlanDict) -> list[str]:
    parts = [f"**Head** {code(str(plan.get('head') or '-'))}", f"**base** {code(str(plan.get('base') or '-'))} "
             f"({esc(str(plan.get('compared_against') or 'unknown'))})"]
    if plan.get("compared_against") == "live":
        parts.append(f"fingerprint {code(str(plan.get('fingerprint')))}")
    if plan.get("unchanged"):
        n = plan["unchanged"]
        parts.append(f"{n} object{'' if n == 1 else 's'} unchanged")
    lines = [_cut(" · ".join(parts))]
    disabled = text.disabled_providers(plan)
    if disabled:
        names = ", ".join(f"{code(p)} ({esc(why)})" for p, why in disabled)
        lines += ["", _cut(f"Not planned (provider disabled): {names}")]
    return lines


def _summary(plan: PlanDict) -> list[str]:
    summaries = plan.get("summaries") or []
    if not summaries:
        return []
    rows = []
    for s in summaries:
        sym = text.SUMMARY_SYMBOLS.get(s["status"], "*")
        details = "; ".join(s.get("details") or ())
        tail = f" — {esc(details)}" if details else ""
        rows.append(f"- {code(sym)} **{esc(s['ref'])}** {esc(s['status'])}{tail}")
    return ["", "#### Summary", "", *_bounded(rows, SUMMARY_BUDGET, "resources")]


KINDS = {"outside": "**outside the server's domain**", "admin": "Global Admin", "actor": "the actor",
         "agent": "agent", "human": "human"}


def _access(plan: PlanDict) -> list[str]:
    access = plan.get("access") or {}
    rows = [f"| {code(p['id'], True)} | {KINDS.get(p['kind'], esc(p['kind']))} | "
            f"{esc(p['summary'].split('): ', 1)[-1])} |" for p in access.get("principals") or ()]
    if not rows:
        return []
    head = ["", "#### Access changes", "", "Who can address whom, and where — a line per identity whose reach changes.",
            "", "| Who | Is | Change |", "|---|---|---|"]
    details = []
    for title, lines in text.access_groups(access):  # rooms and allow-lists, bounded, folded
        if title == "by principal":
            continue
        details += ["", f"<details><summary>{esc(title)} ({len(lines)})</summary>", "", "```",
                    *lines, "```", "</details>"]
    return head + _bounded(rows, ACCESS_BUDGET, "identities") + details


def _warnings(plan: PlanDict) -> list[str]:
    lines = []
    guard = plan.get("guard") or {}
    if guard.get("tripped"):
        agents = "; ".join(f"agents {what}: " + ", ".join(code(a) for a in names)
                           for what, names in text.guard_agents(guard))
        lines.append(f"> - **{text.guard_title(guard)} tripped**: apply refuses this plan without "
                     "`--allow-mass-delete`" + (f" ({agents})" if agents else "") + ".")
    lines += [f"> - {esc(w)}" for w in plan.get("warnings") or ()]
    if not lines:
        return []
    return ["", "> **Warnings**", ">", *_bounded(lines, WARNINGS_BUDGET, "warnings", prefix="> ")]


def _diagram(plan: PlanDict) -> list[str]:
    diagram, note = mermaid.changes_fit(plan)
    if diagram and len(diagram) > DIAGRAM_BUDGET:
        diagram, note = "", mermaid.TOO_LARGE
    if not diagram and not note:
        return []
    out = ["", "#### What changes, as a graph", ""]
    if diagram:
        out += ["```mermaid", diagram.rstrip("\n"), "```"]
    if note:
        out += ["", f"_{note}_"]
    return out


# Details, with truncation ---------------------------------------------------------------------------------


def _fence(body: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _details(changes: Sequence[Mapping[str, Any]], blocks: Sequence[str]) -> list[str]:
    """One collapsible section per org resource (`org` last), with its counts; its changes in plan order, as a
    ```diff block. A resource whose changes were all left out gets no section (the note at the top counts it)."""
    shown = {id(c): b for c, b in zip(changes, blocks, strict=True)}
    out: list[str] = []
    for owner, group in text.by_owner(changes):
        items = [shown[id(c)] for c in group if shown[id(c)]]
        if not items:
            continue
        body = "\n\n".join(items)
        fence = _fence(body)
        heading = text.owner_heading(owner, group) + (f", {len(items)} shown" if len(items) < len(group) else "")
        owner_name, _, counts = heading.partition(": ")
        out += ["", f"<details><summary><b>{esc(owner_name)}</b>: {esc(counts)}</summary>", "",
                f"{fence}diff", body, fence, "", "</details>"]
    return out


def _block(change: Mapping[str, Any], diffs: bool) -> str:
    lines = text.change_lines(change, diffs=diffs)
    if not diffs and text.change_lines(change, diffs=True) != lines:
        lines.append(f" {text.ITEM_INDENT}… diff left out")
    return "\n".join(_cut(line) for line in lines)


WRAPPER = 200  # characters of one org resource's <details> wrapper, at most


# What a reviewer can best do without, first: empty prefix markers, then storage files, gateway records, Matrix
# objects; containers (what runs) last.
PROVIDER_RANK = {"storage": 1, "gateway": 2, "matrix": 3, "runtime": 4}


def _rank(change: Mapping[str, Any]) -> int:
    if change.get("provider") == "storage" and str(change.get("key", "")).endswith("/.keep"):
        return 0
    return PROVIDER_RANK.get(str(change.get("provider")), 2)


def _select(
    full: Sequence[str],
    brief: Sequence[str],
    budget: int,
    ranks: Sequence[int] | None = None,
    shares: Sequence[float] | None = None,
) -> tuple[list[str], int, int]:
    """Blocks that fit the budget: (blocks, changes shown without their diff, changes left out entirely).

    Diffs go first, largest first; then whole changes, the least informative first (`ranks`, low first: empty
    prefix markers before containers), from the end of the plan within a rank. `shares`: each block's share of
    its section's wrapper (a section left empty costs nothing).
    """
    blocks = list(full)
    shares = shares or [WRAPPER / 4] * len(blocks)
    size = sum(len(b) + 2 + share for b, share in zip(blocks, shares, strict=True))
    stripped: set[int] = set()
    for i in sorted(range(len(full)), key=lambda i: (-len(full[i]), i)):
        if size <= budget:
            break
        if len(brief[i]) < len(full[i]):
            size -= len(full[i]) - len(brief[i])
            blocks[i] = brief[i]
            stripped.add(i)
    dropped = 0
    ranks = ranks or [0] * len(blocks)
    for i in sorted(range(len(blocks)), key=lambda i: (ranks[i], -i)):
        if size <= budget:
            break
        size -= len(blocks[i]) + 2 + shares[i]
        blocks[i] = ""
        stripped.discard(i)  # counted as left out now, not as shortened
        dropped += 1
    return blocks, len(stripped), dropped


def render(plan: PlanDict) -> str:
    closing = text.closing_line(plan.get("counts") or {})
    title = [MARKER, f"### {closing}", "", *_meta(plan)]
    body = [*_summary(plan), *_access(plan), *_warnings(plan), *_diagram(plan)]
    changes = plan.get("changes") or []
    if not changes:
        return "\n".join(title + body) + "\n"
    full = [_block(c, True) for c in changes]
    brief = [_block(c, False) for c in changes]
    heading = ["", "#### Details"]
    budget = LIMIT - len("\n".join(title + body + heading)) - NOTE_RESERVE
    ranks = [_rank(c) for c in changes]
    sizes = {owner: len(group) for owner, group in text.by_owner(changes)}
    shares = [WRAPPER / sizes[str(c.get("owner") or "org")] for c in changes]
    while True:
        blocks, stripped, dropped = _select(full, brief, budget, ranks, shares)
        left_out = [c for c, b in zip(changes, blocks, strict=True) if not b]
        out = "\n".join(title + _note(len(changes), stripped, dropped, left_out) + body + heading
                        + _details(changes, blocks))
        if len(out) + 1 <= LIMIT:
            return out + "\n"
        budget -= len(out) + 1 - LIMIT  # the estimate was short by this much; converges in a step or two


def _note(total: int, stripped: int, dropped: int, left_out: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The truncation note, at the top where a reviewer sees it: how much, and of what, was left out."""
    if not stripped and not dropped:
        return []
    parts = []
    if dropped:
        kinds: dict[str, int] = {}
        for c in left_out:
            what = "empty prefix markers" if _rank(c) == 0 else f"{c.get('provider')} objects"
            kinds[what] = kinds.get(what, 0) + 1
        which = ", ".join(f"{n} {what}" for what, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        parts.append(f"{dropped} of {total} changes are left out ({which})" if which else
                     f"{dropped} of {total} changes are left out")
    if stripped:
        parts.append("1 change is shown without its diff" if stripped == 1
                     else f"{stripped} changes are shown without their diff")
    return ["", f"> **Note**: this comment is shortened to stay under {LIMIT:,} characters: "
            f"{' and '.join(parts)}. Run {FULL_PLAN} to see the whole plan."]
