"""One JSON Schema for all four kinds, for editors (yaml-language-server, VS Code): `schemas/org.schema.json`.

It is built from the per-kind schemas, which stay the source of truth, and is self-contained: every kind and
every definition it uses is under its own `$defs`, and every `$ref` is a pointer into the same document, so it
resolves wherever the file is served from — a path next to the org, a URL, or the installed package — with no
network. The document's `kind` selects the kind's schema (`if`/`then`), so completion and hover follow it.

`python -m gitops.editor_schema` prints it (tests keep schemas/org.schema.json equal to that output).
"""

from __future__ import annotations

import json
from typing import Any

from gitops import API_VERSION, KINDS
from gitops.validate.schema import schema_dir

ORG_SCHEMA_ID = "https://hiclaw.io/schemas/gitops/org.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def kind_schema(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((schema_dir() / f"{kind.lower()}.schema.json").read_text(encoding="utf-8"))
    return data


def _rewrite(node: Any, kind: str) -> Any:
    """Point a kind's local references (`#/$defs/name`) at its definitions in the combined document."""
    if isinstance(node, dict):
        out = {k: _rewrite(v, kind) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = f"#/$defs/{kind}.{ref.removeprefix('#/$defs/')}"
        return out
    if isinstance(node, list):
        return [_rewrite(v, kind) for v in node]
    return node


def build() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for kind in KINDS:
        schema = kind_schema(kind)
        body = {k: v for k, v in schema.items() if k not in ("$schema", "$id", "$defs")}
        defs[kind] = {"$comment": f"from {schema['$id']}", **_rewrite(body, kind)}
        for name, definition in sorted(schema.get("$defs", {}).items()):
            defs[f"{kind}.{name}"] = _rewrite(definition, kind)
    return {
        "$schema": DRAFT,
        "$id": ORG_SCHEMA_ID,
        "title": "HiClaw org chart document",
        "description": "A Worker, Team, Human or Manager (hiclaw.io/v1beta1); its `kind` selects the schema. "
        "Built from the per-kind schemas by gitops/editor_schema.py; for editors (yaml-language-server).",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": {"const": API_VERSION, "description": "API version of the resource."},
            "kind": {"enum": list(KINDS), "description": "Resource kind: Worker, Team, Human or Manager."},
        },
        "allOf": [
            {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
             "then": {"$ref": f"#/$defs/{kind}"}}
            for kind in KINDS
        ],
        "$defs": defs,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
