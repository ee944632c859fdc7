"""Views of a plan: text (terminal), markdown (pull-request comment), json (the data), mermaid (a diagram).

Every view renders the dict of `Plan.to_dict()` and computes nothing the plan does not already say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitops.plan.saved import dump_plan
from gitops.views import markdown, mermaid, text

FORMATS = ("text", "markdown", "json", "mermaid")


def render_json(plan: Mapping[str, Any]) -> str:
    """The plan itself, as `plan --out` saves it (schemas/plan.schema.json)."""
    return dump_plan(plan)


def render(plan: Mapping[str, Any], fmt: str, color: bool = False) -> str:
    """Render a plan dict in one of FORMATS; colour applies to text only."""
    if fmt == "text":
        return text.render(plan, color=color)
    if fmt == "markdown":
        return markdown.render(plan)
    if fmt == "json":
        return render_json(plan)
    if fmt == "mermaid":
        return mermaid.changes(plan) or f"flowchart LR\n  n0[{mermaid.label(text.closing_line(plan['counts']))}]\n"
    raise ValueError(f"unknown plan format {fmt!r}; expected one of {', '.join(FORMATS)}")
