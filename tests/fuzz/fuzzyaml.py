"""Documents written as YAML text, the way people and tools write it — and the odd ways.

`dump` writes documents with PyYAML in a drawn style (block or flow, sorted or not, one or several per file);
shared sub-trees come out as anchors and aliases, `Merge` mappings as `<<:` merge keys. `mangle` then edits
the text: explicit tags (`!!int`, `!!timestamp`, `!!binary`, `!custom`, …) in front of values, date-like and
huge numbers, deep flow nesting, a byte-order mark, CRLF line ends, tab indentation, control characters,
duplicate keys, document markers, truncation.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from hypothesis import strategies as st
from yaml.nodes import MappingNode, ScalarNode

MERGE_TAG = "tag:yaml.org,2002:merge"


class Merge(dict[str, Any]):
    """A mapping written with a `<<:` merge key naming `base` (an anchor when `base` is used elsewhere too)."""

    def __init__(self, base: dict[str, Any], own: dict[str, Any]) -> None:
        super().__init__(own)
        self.base = base


class _Dumper(yaml.SafeDumper):
    pass


def _represent_merge(dumper: yaml.SafeDumper, data: Merge) -> MappingNode:
    node = dumper.represent_dict(dict(data))
    node.value.insert(0, (ScalarNode(MERGE_TAG, "<<"), dumper.represent_data(data.base)))
    return node


_Dumper.add_representer(Merge, _represent_merge)


def with_merge(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """The document with one of its mappings rewritten as a merge of another (or of a copy of itself)."""
    mappings = [v for v in _mappings(doc) if v is not doc]
    if not mappings:
        return doc
    target = draw(st.sampled_from(mappings))
    base = draw(st.sampled_from(mappings))
    keep = {k: v for k, v in target.items() if draw(st.booleans())}
    merged = Merge(base if base is not target else dict(target), keep)
    replaced: dict[str, Any] = _replace(doc, target, merged)
    return replaced


def _mappings(value: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            out += _mappings(v)
    elif isinstance(value, list):
        for v in value:
            out += _mappings(v)
    return out


def _replace(tree: Any, old: Any, new: Any) -> Any:
    if tree is old:
        return new
    if isinstance(tree, Merge):
        return tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            tree[k] = _replace(v, old, new)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            tree[i] = _replace(v, old, new)
    return tree


def dump(draw: st.DrawFn, docs: list[Any]) -> str:
    """The documents as one YAML stream, in a drawn style."""
    style = draw(st.sampled_from((False, None, True)))
    sort = draw(st.booleans())
    width = draw(st.sampled_from((80, 20, 10_000)))
    text: str = yaml.dump_all(
        docs,
        Dumper=_Dumper,
        default_flow_style=style,
        sort_keys=sort,
        allow_unicode=draw(st.booleans()),
        width=width,
        explicit_start=len(docs) > 1 or draw(st.booleans()),
    )
    return text


TAGS = (
    "!!int",
    "!!float",
    "!!bool",
    "!!timestamp",
    "!!null",
    "!!str",
    "!!binary",
    "!!set",
    "!!omap",
    "!!pairs",
    "!!seq",
    "!!map",
    "!!merge",
    "!!python/object/apply:os.system",
    "!custom",
    "!",
    "!<tag:example.com,2024:x>",
)
SCALARS = (
    "2024-13-45",
    "2024-02-30",
    "0000-01-01",
    "2024-01-31T25:61:00Z",
    "2024-01-31 10:00:00 +99:00",
    "9" * 4400,
    "0x" + "f" * 4400,
    "0b" + "1" * 200,
    "1:2:3:4:5:6:7:8:9",
    "0o777",
    "1e999999",
    ".NaN",
    "-.inf",
    "~",
    "yes",
    "off",
    "0x",
    "1__0",
    '"\\x00"',
    '"\\u0007"',
    '"\\uD800"',
    "'it''s'",
    "|-\n  block",
    "*undefined",
    "&a x",
    "? complex",
    "[" * 70 + "]" * 70,
    "[" * 600 + "]" * 600,
    "{a: " * 80 + "x" + "}" * 80,
)
_VALUE = re.compile(r"(:[ ]|^[ ]*- )(?=\S)", re.MULTILINE)


def mangle(draw: st.DrawFn, text: str) -> str:
    """One to three text edits of the kinds people and tools make, drawn at random places."""
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.integers(0, 11))
        spots = [m.end() for m in _VALUE.finditer(text)]
        if edit == 0 and spots:  # an explicit tag in front of a value
            at = draw(st.sampled_from(spots))
            text = text[:at] + draw(st.sampled_from(TAGS)) + " " + text[at:]
        elif edit == 1 and spots:  # an odd scalar in place of a value
            at = draw(st.sampled_from(spots))
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            text = text[:at] + draw(st.sampled_from(SCALARS)) + text[end:]
        elif edit == 2:
            text = "\ufeff" + text
        elif edit == 3:
            text = text.replace("\n", "\r\n")
        elif edit == 4:  # a tab in the indentation of one line
            lines = text.split("\n")
            i = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[i] = (
                re.sub(r"^ +", lambda m: "\t" + m.group()[1:], lines[i])
                if lines[i].startswith(" ")
                else ("\t" + lines[i])
            )
            text = "\n".join(lines)
        elif edit == 5:  # a control character somewhere
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from("\x00\x01\x07\x08\x0b\x0c\x1b\x7f\x85\u2028\ufffe")) + text[at:]
        elif edit == 6:  # a line repeated: duplicate keys, duplicate list items
            lines = text.split("\n")
            i = draw(st.integers(0, max(0, len(lines) - 1)))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif edit == 7:  # cut short
            text = text[: draw(st.integers(0, len(text)))]
        elif edit == 8:  # document markers
            text = draw(st.sampled_from(("---\n", "%YAML 1.1\n---\n", "%YAML 9.9\n---\n", "...\n", "--- |\n"))) + text
            if draw(st.booleans()):
                text += draw(st.sampled_from(("\n---\n", "\n...\n", "\n--- ~\n", "\n--- []\n", "\n--- x\n")))
        elif edit == 9:  # indentation shifted on one line
            lines = text.split("\n")
            i = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[i] = draw(st.sampled_from((" ", "  ", "- "))) + lines[i]
            text = "\n".join(lines)
        elif edit == 10 and spots:  # an anchor on one value and an alias to it somewhere else
            at = draw(st.sampled_from(spots))
            text = text[:at] + "&a1 " + text[at:]
            spots = [m.end() for m in _VALUE.finditer(text)]
            other = draw(st.sampled_from(spots))
            end = text.find("\n", other)
            end = len(text) if end < 0 else end
            text = text[:other] + draw(st.sampled_from(("*a1", "*a2", "{<<: *a1}", "[*a1, *a1]"))) + text[end:]
        elif edit == 11:  # a stray quote or bracket
            at = draw(st.integers(0, len(text)))
            text = (
                text[:at] + draw(st.sampled_from(("'", '"', "[", "{", "]", ": ", "#", "&", "*", "|", ">"))) + text[at:]
            )
    return text


def encode(draw: st.DrawFn, text: str) -> bytes:
    """UTF-8 mostly; sometimes another encoding or a stray invalid byte."""
    pick = draw(st.integers(0, 19))
    if pick == 0:
        return text.encode("utf-16")
    if pick == 1:
        return text.encode("latin-1", errors="replace")
    raw = text.encode("utf-8", errors="surrogatepass")
    if pick == 2:
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"))) + raw[at:]
    return raw
