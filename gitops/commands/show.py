"""`hiclaw-gitops show`: render a plan saved by `plan --out` again, in any view, without planning anything."""

from __future__ import annotations

import argparse
import sys

from gitops.commands._common import add_command, fail
from gitops.commands.plan import PLAN_FORMATS, render


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "show", ("color",),
        help="render a saved plan (from `plan --out`) as text, markdown or JSON",
        description="Read a plan saved by `plan --out FILE` and print it in the chosen view: the same output "
        "`plan` printed, for review or for a pull-request comment made in a later job. Nothing is planned, "
        "read from the org or observed. Exit 1 when the file is not a plan this version can read.",
    )
    p.add_argument("planfile", metavar="PLANFILE", help="a JSON plan saved with `plan --out`")
    p.add_argument("--format", choices=PLAN_FORMATS, default="text", help="text (default), markdown or json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops.plan.saved import PlanFileError, load_plan

    try:
        plan = load_plan(args.planfile)
    except PlanFileError as exc:
        return fail(str(exc))
    sys.stdout.write(render(plan.to_dict(), args.format, args.color))
    return 0
