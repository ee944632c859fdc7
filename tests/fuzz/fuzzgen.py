"""Documents built from the schemas' shapes, then mutated.

`instance(draw, schema)` walks a JSON Schema (the project's own files under schemas/) and draws a value of its
shape: required properties always, optional ones sometimes, enums, patterns, bounds and `$ref`s honoured —
mostly. Names come from a small alphabet so that references resolve often and identities collide often; string
fields known to carry a reference, a URL, a package or a Matrix ID draw from values of that kind, good and bad.

`mutate(draw, value)` then breaks the value at random paths: types swapped, names at the edges, keys dropped
or misspelt, values replaced by huge numbers, control characters, deep nesting, or a sub-tree reused elsewhere
(which YAML writes as an anchor and an alias).
"""

from __future__ import annotations

import copy
import datetime
import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KINDS = ("Worker", "Team", "Human", "Manager")
WEIGHTED_KINDS = ("Worker", "Worker", "Worker", "Team", "Team", "Human", "Human", "Human", "Manager")

NAMES = ("a", "b", "c", "dev", "qa", "ops", "web", "data", "pam", "sam", "lee", "manager", "admin", "default", "t", "u")
EDGE_NAMES = (
    "",
    "A",
    "-a",
    "a-",
    "a" * 63,
    "a" * 64,
    "a_b",
    "a.b",
    "é",
    "a b",
    "0",
    "1e3",
    "null",
    "true",
    "~",
    "a\tb",
    "a\x00b",
    "a\u2028b",
    "\ufeffa",
    "a/b",
    "../a",
    "😀",
)
SERVER = "matrix-local.hiclaw.io:8080"
MXIDS = (
    f"@pam:{SERVER}",
    f"@a:{SERVER}",
    "@pam:evil.example.org",
    "@admin:" + SERVER,
    "@manager:" + SERVER,
    "@:x",
    "@a",
    "pam",
    "@A:b",
    "@a:b:c:d",
    "@a:[::1]",
)
URLS = (
    "http://aigw-local.hiclaw.io:8080/mcp-servers/github/mcp",
    "http://aigw-local.hiclaw.io:8080/mcp-servers//mcp",
    "http://aigw-local.hiclaw.io:8080/mcp-servers/",
    "https://mcp.example.com/sse",
    "http://[::1",
    "http://[zz]/",
    "http://h:99999/",
    "http://h:abc/",
    "http://user:pw@h/",
    "file:///etc/passwd",
    "",
    "not a url",
    "http://" + "a" * 300,
)
PACKAGES = (
    "file://packages/a.zip",
    "file://./packages/a.zip",
    "file://../outside.zip",
    "file:///etc/passwd",
    "file://packages/a\x00.zip",
    "file://packages/a\n.zip",
    "file://",
    "file://.",
    "file://packages/../../x.zip",
    "https://example.com/a.zip",
    "nacos://nacos:8848/public/a",
    "packages/a.zip",
    "file://" + "a/" * 200 + "x.zip",
)
MODELS = ("qwen3.6-plus", "claude-sonnet-4-6", "", "m" * 200, "gpt/4", "model with spaces")
ENV_NAMES = ("A", "PATH", "HICLAW_X", "OPENCLAW_Y", "HOME", "_", "API_KEY", "a1")
BAD_ENV_NAMES = ("1A", "A-B", "", "É", "A B", "A\x00")
SECRETISH = ("sk-EXAMPLEonlyNotARealKey0000000000", "AKIAIOSFODNN7EXAMPLE", "plain value", "")
TEXTS = (
    "",
    "x",
    "# Title\nline two\n",
    "a: b",
    "- x",
    "'quoted'",
    '"dq"',
    "{not: yaml}",
    "tab\there",
    "cr\rlf",
    "nul\x00char",
    "bell\x07",
    "del\x7f",
    "bom\ufeff",
    "line\u2028sep",
    "é😀",
    "x" * 5000,
    "${self.name}",
    "%s %d {}",
    "yes",
    "on",
    "2024-01-31",
    "2024-13-45",
    "0x1F",
    "1_000",
    ".nan",
    "-.inf",
)

# String fields by property name: what kind of value they hold (the schemas say only "string").
FIELD_VALUES: dict[str, tuple[str, ...]] = {
    "model": MODELS,
    "url": URLS,
    "package": PACKAGES,
    "matrixUserId": MXIDS,
    "image": ("hiclaw/worker-agent:latest", "", "UPPER:case", "a" * 300, "img@sha256:xyz"),
    "source": ("nacos://nacos:8848/public", "nacos://", "http://x", ""),
    "every": ("30m", "1h", "", "forever", "-5m"),
    "workerIdleTimeout": ("12h", "0", "", "x"),
    "heartbeatInterval": ("15m", "", "x"),
    "email": ("a@example.com", "not-an-email", "", "@", "a@b"),
    "displayName": ("Pam", "", "é😀", "x" * 500),
}


def schema(kind: str) -> dict[str, Any]:
    return _load(kind.lower())


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))
    return data


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return node
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return _resolve(merged, root)


def _one_in(draw: st.DrawFn, n: int) -> bool:
    return draw(st.integers(0, n - 1)) == 0


def name(draw: st.DrawFn) -> str:
    """Mostly a name of the small alphabet (collisions, references that resolve), sometimes one at the edges."""
    return draw(st.sampled_from(EDGE_NAMES)) if _one_in(draw, 30) else draw(st.sampled_from(NAMES))


def _string(draw: st.DrawFn, node: dict[str, Any], field: str) -> str:
    if field in FIELD_VALUES and not _one_in(draw, 6):  # the first value of each is a good one
        values = FIELD_VALUES[field]
        return values[0] if not _one_in(draw, 4) else draw(st.sampled_from(values))
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        if pattern.startswith("^[a-z0-9][a-z0-9-]"):  # the name pattern
            return name(draw)
        if not _one_in(draw, 8):
            return draw(st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) < 200))
    if node.get("format") == "email":
        return "a@example.com" if not _one_in(draw, 4) else draw(st.sampled_from(FIELD_VALUES["email"]))
    pick = draw(st.integers(0, 7))
    if pick < 4:
        return name(draw)
    if pick < 6:  # printable text: no control characters, no surrogates
        return draw(st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=12))
    return draw(st.sampled_from(TEXTS)) if pick == 6 else draw(st.text(max_size=12))


def _number(draw: st.DrawFn, node: dict[str, Any], integer: bool) -> int | float:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum")
    if _one_in(draw, 40):  # at and past the edges (the mutations add more)
        edges: list[int | float] = [0, -1, 1, 65535, 65536, 2**31, 2**63, -(2**63) - 1, 10**30]
        edges += [v + d for v in (low, high) if isinstance(v, (int, float)) for d in (-1, 0, 1)]
        if not integer:
            edges += [0.5, 1e308, -1e-308, math.inf, -math.inf]
        return draw(st.sampled_from(edges))
    if not integer:
        lo_f = float(low) if isinstance(low, (int, float)) else 0.0
        hi_f = float(high) if isinstance(high, (int, float)) else lo_f + 600.0
        return lo_f + (hi_f - lo_f) * draw(st.sampled_from((0.1, 0.25, 0.5, 1.0)))
    lo = int(low) if isinstance(low, (int, float)) else 0
    lo += 1 if "exclusiveMinimum" in node and "minimum" not in node else 0
    hi = int(high) if isinstance(high, (int, float)) else lo + 9000
    return draw(st.integers(lo, max(lo, hi)))


def _free_json(draw: st.DrawFn, depth: int) -> Any:
    """A small free-form value, for schema-less objects (an access entry's scope)."""
    if depth > 2 or _one_in(draw, 2):
        return draw(st.one_of(st.text(max_size=6), st.integers(-5, 5), st.booleans(), st.none()))
    if _one_in(draw, 2):
        return [_free_json(draw, depth + 1) for _ in range(draw(st.integers(0, 2)))]
    return {draw(st.sampled_from(("bucket", "prefixes", "x", "resources"))): _free_json(draw, depth + 1)}


def instance(draw: st.DrawFn, node: dict[str, Any], root: dict[str, Any], field: str = "", depth: int = 0) -> Any:
    """A value of the schema node's shape (mostly valid: the mutations break it)."""
    node = _resolve(node, root)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return draw(st.sampled_from(node["enum"]))
    kind = node.get("type")
    if isinstance(kind, list):  # mostly the first (`["object", "null"]`: a section, sometimes left empty)
        kind = kind[0] if not _one_in(draw, 5) else draw(st.sampled_from(kind))
    if kind == "object" or (kind is None and "properties" in node):
        return _object(draw, node, root, depth)
    if kind == "array":
        items = node.get("items", {})
        low = int(node.get("minItems", 0))
        count = draw(st.integers(low, low + (2 if depth < 3 else 0)))
        return [instance(draw, items, root, field, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(draw, node, field)
    if kind in ("integer", "number"):
        return _number(draw, node, kind == "integer")
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "null":
        return None
    return _free_json(draw, depth)


def _object(draw: st.DrawFn, node: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    props: dict[str, Any] = node.get("properties", {})
    required = [k for k in node.get("required", []) if k in props]
    out: dict[str, Any] = {}
    for key in props:
        if key == "status":
            continue  # written by the reconciler; the mutations add it sometimes
        if key in required or (depth < 4 and _one_in(draw, 3)):
            out[key] = instance(draw, props[key], root, key, depth + 1)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):  # env, labels, images: keys of the propertyNames shape, sometimes not
        for _ in range(draw(st.integers(0, 2))):
            names = node.get("propertyNames", {})
            key = draw(st.sampled_from(names["enum"])) if "enum" in names else draw(st.sampled_from(ENV_NAMES))
            out[key] = draw(st.sampled_from(SECRETISH)) if _one_in(draw, 4) else _string(draw, extra, key)
    elif not props and extra is None:
        return {k: _free_json(draw, depth) for k in ("bucket", "prefixes")[: draw(st.integers(0, 2))]}
    return out


def document(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """One org document of `kind`, built from its schema; the name is from the small alphabet."""
    root = schema(kind)
    doc: dict[str, Any] = instance(draw, root, root)
    doc["metadata"]["name"] = name(draw)
    return doc


# Mutations -------------------------------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path into the value (mapping keys and list indexes), the root excluded."""
    out: list[Path_] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out += paths(v, (*prefix, i))
    return out


def _get(value: Any, path: Path_) -> Any:
    for step in path:
        value = value[step]
    return value


def _set(container: Any, step: str | int, item: Any) -> None:
    container[step] = item


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    2**64,
    10**40,
    1.5,
    math.nan,
    math.inf,
    "",
    "x",
    [],
    {},
    [None],
    {"": ""},
    datetime.date(2024, 1, 31),
    datetime.datetime(2024, 1, 31, 12, 0, tzinfo=datetime.UTC),
    "x" * 3000,
    "\x00",
    "@a:b",
    "${self.name}",
)


def _replacement(draw: st.DrawFn, old: Any) -> Any:
    pick = draw(st.integers(0, 5))
    if pick == 0:
        return name(draw)
    if pick == 1 and isinstance(old, str):
        return old + draw(st.sampled_from(("\x00", "\x07", "\t", "\r", "\u2028", "é", " ", "-", "A", "\ufeff")))
    if pick == 2:
        return _deep(draw(st.sampled_from((3, 20, 62, 63, 64, 65, 70))))
    if pick == 3 and isinstance(old, list) and old:
        return [*old, copy.deepcopy(old[0])]  # a duplicate item: names, ports, members twice
    return copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))  # later mutations may change it in place


MUTATIONS = ("replace", "drop", "misspell", "reuse", "status", "annotation", "duplicate")


def mutate(draw: st.DrawFn, value: dict[str, Any], count: int) -> dict[str, Any]:
    """`count` random mutations of a document (a copy); each kind of mutation keeps the rest of it intact."""
    value = copy.deepcopy(value)
    for _ in range(count):
        where = paths(value)
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = _get(value, path[:-1])
        last = path[-1]
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "replace":
            parent[last] = _replacement(draw, parent[last])
        elif kind == "drop":
            del parent[last]
        elif kind == "misspell" and isinstance(parent, dict) and isinstance(last, str) and last:
            parent[last[:-1] + last[-1].upper() if len(last) > 1 else last + "x"] = parent.pop(last)
        elif kind == "reuse":  # one sub-tree in two places: YAML writes an anchor and an alias
            other = draw(st.sampled_from(where))
            target: Any = _get(value, other[:-1])
            if isinstance(target, (dict, list)) and not _contains(parent[last], target):
                _set(target, other[-1], parent[last])
        elif kind == "status":
            value["status"] = {"phase": "Running"}
        elif kind == "annotation":
            meta = value.setdefault("metadata", {})
            if isinstance(meta, dict):
                key = draw(st.sampled_from(("prune", "enforce-state", "matrix-user-id", "unknown", "")))
                meta.setdefault("annotations", {})
                if isinstance(meta["annotations"], dict):
                    meta["annotations"]["gitops.hiclaw.io/" + key] = draw(
                        st.sampled_from(("disabled", "enabled", "true", "x", *MXIDS))
                    )
        elif kind == "duplicate" and isinstance(parent, list) and isinstance(last, int):
            parent.append(copy.deepcopy(parent[last]))
    return value


def _contains(tree: Any, node: Any) -> bool:
    """Whether `node` is `tree` or inside it (reusing a tree inside itself would be a cycle)."""
    if tree is node:
        return True
    if isinstance(tree, dict):
        return any(_contains(v, node) for v in tree.values())
    if isinstance(tree, list):
        return any(_contains(v, node) for v in tree)
    return False


Strategy = Callable[[st.DrawFn], Any]
