"""`hiclaw-gitops schema`: print the JSON Schema editors use for org files (all four kinds in one document)."""

from __future__ import annotations

import argparse
import sys

from gitops.commands._common import add_command


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "schema", (),
        help="print the JSON Schema of org files, for editors (yaml-language-server, VS Code)",
        description="Print one self-contained JSON Schema covering Worker, Team, Human and Manager documents "
        "(the same as schemas/org.schema.json). Save it next to the org and point the editor at it: "
        "`hiclaw-gitops schema > .hiclaw/org.schema.json`, then a `# yaml-language-server: $schema=…` modeline "
        "or the `yaml.schemas` setting (docs/editors.md).",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops.editor_schema import render

    sys.stdout.write(render())
    return 0
