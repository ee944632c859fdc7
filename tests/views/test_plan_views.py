"""Plan views: text, markdown, json and mermaid render the plan dict, byte for byte as the golden files say."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from plan_samples import huge, sample

from gitops.views import FORMATS, render, text
from gitops.views import markdown as md

Golden = Callable[[str, str], None]
CLOSING = re.compile(r"^(No changes\.|Plan: \d+ to create, \d+ to update, (\d+ to replace, )?\d+ to delete\.)$")


# Golden renderings ----------------------------------------------------------------------------------------


def test_text(sample_plan: dict[str, Any], golden: Golden) -> None:
    golden("plan.txt", render(sample_plan, "text"))


def test_text_colour(sample_plan: dict[str, Any], golden: Golden) -> None:
    golden("plan.color.txt", render(sample_plan, "text", color=True))


def test_markdown(sample_plan: dict[str, Any], golden: Golden) -> None:
    golden("plan.md", render(sample_plan, "markdown"))


def test_json(sample_plan: dict[str, Any], golden: Golden) -> None:
    golden("plan.json", render(sample_plan, "json"))


def test_mermaid(sample_plan: dict[str, Any], golden: Golden) -> None:
    golden("plan.mmd", render(sample_plan, "mermaid"))


def test_no_changes(no_change_plan: dict[str, Any], golden: Golden) -> None:
    golden("no-changes.txt", render(no_change_plan, "text"))
    golden("no-changes.md", render(no_change_plan, "markdown"))
    golden("no-changes.mmd", render(no_change_plan, "mermaid"))


def test_truncated_markdown(golden: Golden) -> None:
    golden("truncated.md", render(huge().to_dict(), "markdown"))


# Fixed phrases --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "line"),
    [
        ({"create": 0, "update": 0, "replace": 0, "delete": 0}, "No changes."),
        ({"create": 1, "update": 2, "replace": 0, "delete": 3}, "Plan: 1 to create, 2 to update, 3 to delete."),
        ({"create": 1, "update": 2, "replace": 1, "delete": 0},
         "Plan: 1 to create, 2 to update, 1 to replace, 0 to delete."),
        ({"create": 0, "update": 0, "replace": 4, "delete": 0},
         "Plan: 0 to create, 0 to update, 4 to replace, 0 to delete."),
    ],
)
def test_closing_line(counts: dict[str, int], line: str) -> None:
    assert text.closing_line(counts) == line
    assert CLOSING.match(line)


def test_text_ends_with_the_closing_line(sample_plan: dict[str, Any], no_change_plan: dict[str, Any]) -> None:
    assert render(sample_plan, "text").splitlines()[-1] == "Plan: 3 to create, 3 to update, 1 to replace, 2 to delete."
    assert render(no_change_plan, "text").splitlines()[-1] == "No changes."
    assert render(sample_plan, "text", color=True).splitlines()[-1] == (
        "\033[1mPlan: 3 to create, 3 to update, 1 to replace, 2 to delete.\033[0m"
    )


def test_markdown_title_is_the_closing_line(sample_plan: dict[str, Any], no_change_plan: dict[str, Any]) -> None:
    assert "### Plan: 3 to create, 3 to update, 1 to replace, 2 to delete." in render(sample_plan, "markdown")
    assert render(no_change_plan, "markdown").splitlines()[1] == "### No changes."


# Behaviour ------------------------------------------------------------------------------------------------


def test_colour_only_when_asked(sample_plan: dict[str, Any]) -> None:
    for fmt in FORMATS:
        assert "\033[" not in render(sample_plan, fmt)
    coloured = render(sample_plan, "text", color=True)
    assert "\033[32m+" in coloured and "\033[31m-" in coloured and "\033[33m~" in coloured
    assert "\033[36m\033[1m± runtime/container/hiclaw-worker-fe-dev" in coloured
    assert re.sub(r"\033\[[0-9;]*m", "", coloured) == render(sample_plan, "text")


def test_views_do_not_touch_the_plan(sample_plan: dict[str, Any]) -> None:
    before = copy.deepcopy(sample_plan)
    for fmt in FORMATS:
        render(sample_plan, fmt)
    assert sample_plan == before


def test_views_are_deterministic() -> None:
    for fmt in FORMATS:
        assert render(sample().to_dict(), fmt) == render(sample().to_dict(), fmt)


def test_json_view_is_the_plan(sample_plan: dict[str, Any]) -> None:
    assert json.loads(render(sample_plan, "json")) == sample_plan


def test_unknown_format(sample_plan: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unknown plan format"):
        render(sample_plan, "yaml")


def test_text_shows_file_contents_as_a_unified_diff(sample_plan: dict[str, Any]) -> None:
    out = render(sample_plan, "text")
    assert "-       Pragmatic; small pull requests with tests." in out
    assert "+       Pragmatic; small, reviewed pull requests with tests." in out
    assert "@@ -1,3 +1,3 @@" in out


def test_long_contents_are_cut() -> None:
    change = {"key": "storage/object/x", "action": "update", "reason": "content changed", "owner": "org",
              "diff": [{"op": "change", "path": "content", "old": "a\n" * 200, "new": "b\n" * 200}]}
    lines = text.change_lines(change)
    assert len(lines) <= text.MAX_DIFF_LINES + 3
    assert lines[-1].strip().startswith("…") and "more diff lines" in lines[-1]
    long = text.fmt_value("x" * 5000)
    assert len(long) < text.MAX_INLINE + 20 and long.endswith("(5002 chars)")


def test_secrets_stay_references(sample_plan: dict[str, Any]) -> None:
    for fmt in FORMATS:
        out = render(sample_plan, fmt)
        assert "(redacted)" not in out
    assert 'password: "secret://matrix/alice/password"' in render(sample_plan, "text")


# Markdown size limit -------------------------------------------------------------------------------------


def test_truncation_keeps_the_limit_and_says_so() -> None:
    plan = huge().to_dict()
    out = render(plan, "markdown")
    assert len(out) <= md.LIMIT
    assert out.startswith(md.MARKER)
    note = next(line for line in out.splitlines() if line.startswith("> **Note**"))
    omitted = int(re.search(r"(\d+) of (\d+) changes are left out", note).group(1))  # type: ignore[union-attr]
    assert omitted > 0
    assert "`hiclaw-gitops plan --format json`" in note
    shown = sum(1 for line in out.splitlines() if line.startswith("+ storage/") or line.startswith("+ matrix/"))
    assert shown + omitted == len(plan["changes"])
    assert out == render(huge().to_dict(), "markdown")


def test_truncation_drops_diffs_before_changes() -> None:
    plan = huge(60).to_dict()
    full = render(plan, "markdown")
    assert len(full) <= md.LIMIT
    note = next(line for line in full.splitlines() if line.startswith("> **Note**"))
    assert "shown without their diff" in note and "left out" not in note
    for change in plan["changes"]:
        assert f"\n{text.SYMBOLS[change['action']]} {change['key']}  #" in full


def test_small_plans_are_not_truncated(sample_plan: dict[str, Any]) -> None:
    assert "> **Note**" not in render(sample_plan, "markdown")


@pytest.mark.parametrize("size", [1, 50, 400, 1500])
def test_limit_holds_at_every_size(size: int) -> None:
    assert len(render(huge(size).to_dict(), "markdown")) <= md.LIMIT


def test_one_enormous_change_loses_only_its_diff() -> None:
    plan = sample().to_dict()
    plan["changes"][0]["diff"] = [
        {"op": "change", "path": f"env.VAR_{i}", "old": "o" * 300, "new": "n" * 300} for i in range(400)
    ]
    out = render(plan, "markdown")
    assert len(out) <= md.LIMIT
    assert "1 change is shown without its diff." in out
    for change in plan["changes"]:
        assert change["key"] in out


def test_markdown_fences_survive_backticks(sample_plan: dict[str, Any]) -> None:
    sample_plan["changes"][0]["reason"] = "a ``` fence in a reason"
    out = render(sample_plan, "markdown")
    assert "````diff" in out


def test_a_cut_drops_the_least_informative_changes_first() -> None:
    """Empty prefix markers go before storage files, gateway and Matrix objects; containers go last."""
    from gitops.views.markdown import _note, _rank, _select

    changes = [
        {"provider": "runtime", "key": "runtime/container/hiclaw-worker-a"},
        {"provider": "storage", "key": "storage/object/teams/t/.keep"},
        {"provider": "matrix", "key": "matrix/room/r"},
        {"provider": "storage", "key": "storage/object/agents/a/SOUL.md"},
    ]
    full = ["x" * 100] * 4
    blocks, stripped, dropped = _select(full, full, 102 * 2, [_rank(c) for c in changes], [0.0] * 4)
    assert (stripped, dropped) == (0, 2)
    assert [bool(b) for b in blocks] == [True, False, True, False]  # the marker and the file; the container stays
    note = _note(4, 0, 2, [changes[1], changes[3]])[1]
    assert "2 of 4 changes are left out (1 empty prefix markers, 1 storage objects)" in note


def test_a_changed_policy_shows_the_statements_that_changed() -> None:
    old = [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::b"]},
           {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/agents/a/*"]}]
    new = [old[0], {"Effect": "Allow", "Action": ["s3:GetObject"],
                    "Resource": ["arn:aws:s3:::b/agents/a/*", "arn:aws:s3:::b/teams/t/*"]}]
    change = {"key": "storage/user/a", "action": "update", "reason": "spec changed", "owner": "Worker/a",
              "diff": [{"op": "change", "path": "statements", "old": old, "new": new}]}
    assert text.change_lines(change)[1:] == [
        '~   statements[1].Resource: ["arn:aws:s3:::b/agents/a/*"] → '
        '["arn:aws:s3:::b/agents/a/*", "arn:aws:s3:::b/teams/t/*"]'
    ]


@pytest.mark.parametrize(("tripped_by", "title"), [
    ((), "Prune guard"), (("prune",), "Prune guard"), (("state",), "State guard"),
    (("prune", "state"), "Prune and state guards"),
])
def test_the_views_name_the_guard_that_tripped(tripped_by: tuple[str, ...], title: str) -> None:
    plan = sample().to_dict()
    plan["guard"] = {"tripped": True, "tripped_by": list(tripped_by), "reasons": ["r"],
                     "deleted_agents": ["Worker/a"] if "prune" in tripped_by or not tripped_by else [],
                     "stopped_agents": ["Team/t/b", "Worker/c"] if "state" in tripped_by else []}
    out, markdown = render(plan, "text"), render(plan, "markdown")
    assert f"{title} tripped: apply refuses this plan without --allow-mass-delete." in out
    assert f"**{title} tripped**" in markdown
    assert ("  agents stopped or put to sleep: Team/t/b, Worker/c" in out) == ("state" in tripped_by)
    assert ("`Team/t/b`, `Worker/c`" in markdown) == ("state" in tripped_by)
    assert ("  agents deleted: Worker/a" in out) == ("state" not in tripped_by or "prune" in tripped_by)
