"""Parse one YAML file into plain documents fast (libyaml), and locate any JSON path's line on demand.

Parsing is the hot path: it uses libyaml's C parser with PyYAML's safe constructor, plus the guards
that plain `yaml.safe_load` lacks — duplicate keys (PyYAML silently keeps the last), alias expansion
bombs and nesting too deep for the rest of the program, values whose tag or form promises a type they are
not (`!!int abc`, `2024-13-45`, a 5,000-digit integer), mapping keys that are not strings, tags that are not
plain data (`!!set`, `!!binary`), and control characters located at their line and column. Each becomes
one located diagnostic; nothing escapes as an exception. Line numbers are not kept for every node;
`Locator` re-composes a file only when a diagnostic needs an exact position, which is rare.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitops.diagnostics import Diagnostic, diag

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 1 << 20  # 1 MiB: an org-chart file is a few KiB; larger is a mistake or an attack
MAX_EXPANDED_NODES = 100_000  # a document's node count after alias expansion
MAX_DEPTH = 64  # nesting of mappings and lists (through aliases); an org chart needs about 8
MAX_INT_DIGITS = 100  # digits of an integer literal; Python refuses to print more than 4,300
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
_TAG_WORDS = {
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:timestamp": "a date or time",
    "tag:yaml.org,2002:null": "empty (null)",
}
# Tags PyYAML's safe loader constructs that are not plain data (JSON's model): refused, like custom tags.
_NOT_PLAIN = ("binary", "set", "omap", "pairs")
# Characters YAML does not allow in a stream (YAML 1.1 §5.1; libyaml's reader refuses them).
_FORBIDDEN = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DATE_LIKE = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")
_INT_TEXT = re.compile(r"^[-+]?(0b[01_]+|0o?[0-7_]+|[0-9_]+|0x[0-9a-fA-F_]+|[1-9][0-9_]*(:[0-5]?[0-9])+)$")


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """One YAML document of a file: its position in the file and its plain data."""

    file: str
    index: int
    line: int
    data: Any


class _DuplicateKey(Exception):
    def __init__(self, key: str, mark: yaml.Mark, first: yaml.Mark) -> None:
        super().__init__(key)
        self.key, self.mark, self.first = key, mark, first


class _AliasBomb(Exception):
    def __init__(self, mark: yaml.Mark, detail: str) -> None:
        super().__init__(detail)
        self.mark, self.detail = mark, detail


class _Located(Exception):
    """A problem with one node: its code, message, hint and where it starts."""

    def __init__(self, code: str, mark: yaml.Mark, message: str, hint: str) -> None:
        super().__init__(message)
        self.code, self.mark, self.message, self.hint = code, mark, message, hint


def _typed(tag: str) -> Any:
    """The safe constructor for `tag`, refusing text that is not of its type with a located Y110."""
    base = yaml.constructor.SafeConstructor.yaml_constructors[tag]
    word = _TAG_WORDS[tag]

    def construct(loader: Any, node: Node) -> Any:
        value = node.value if isinstance(node, ScalarNode) else ""
        explicit = loader.explicit_tag(node)
        if tag.endswith(":int") and _INT_TEXT.match(value):
            body = value.lstrip("+-").replace("_", "").replace(":", "")
            digits = len(body) - (2 if body[1:2] in ("x", "o", "b") else 0)
            if digits > MAX_INT_DIGITS:
                raise _Located(
                    "Y110",
                    node.start_mark,
                    f"an integer of {digits:,} digits is too long (at most {MAX_INT_DIGITS})",
                    "quote the value if it is text; no field takes a number this large",
                )
        try:
            return base(loader, node)
        except Exception as exc:  # the safe constructors raise ValueError, IndexError, KeyError, AttributeError…
            if explicit:
                message = f"the value tagged `{explicit}` is not {word}"
                hint = f"remove the `{explicit}` tag, or write {word} after it"
            elif tag.endswith(":timestamp") and _DATE_LIKE.match(value):
                reason = f" ({exc})" if isinstance(exc, ValueError) and str(exc) else ""
                message = f"`{value[:40]}` looks like a date but is not one{reason}"
                hint = f'quote the value if it is text: "{value[:40]}"; a date is written YYYY-MM-DD'
            else:
                message = f"this value cannot be read as {word}"
                hint = "quote the value if it is text"
            raise _Located("Y110", node.start_mark, message, hint) from None

    return construct


def _not_plain(loader: Any, node: Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"the tag {node.tag!r} is not plain data (mappings, lists, strings, numbers, booleans)",
        node.start_mark,
    )


class _Loader(_BaseLoader):  # type: ignore[misc,unused-ignore]
    """Safe loader that refuses duplicate keys, non-string keys and values its tag or form mis-types, and
    checks alias expansion and nesting depth before constructing."""

    check_aliases = False
    text = ""
    lines: list[str] | None = None

    def construct_document(self, node: Node) -> Any:
        if self.check_aliases:
            _check_expansion(node)
        return super().construct_document(node)

    def explicit_tag(self, node: Node) -> str:
        """The tag as written (`!!int`) when the node carries one in the text, else ''."""
        if self.lines is None:
            self.lines = self.text.splitlines()
        mark = node.start_mark
        line = self.lines[mark.line] if mark.line < len(self.lines) else ""
        if line[mark.column : mark.column + 1] != "!":
            return ""
        return line[mark.column :].split(None, 1)[0][:40]

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        if all(map(isinstance, mapping, repeat(str))):  # the common case, checked at C speed
            return mapping
        for key_node, _ in node.value:  # merge keys are flattened away by now
            if not (isinstance(key_node, ScalarNode) and key_node.tag == STR_TAG):
                key = mapping_key_text(key_node)
                raise _Located(
                    "Y111",
                    key_node.start_mark,
                    f"mapping key {key} is {_key_kind(key_node)}, not a string",
                    f'quote the key: "{key_node.value}": …'
                    if isinstance(key_node, ScalarNode) and len(key_node.value) <= 40
                    else "keys are names: write them as plain strings",
                )
        return mapping

    def flatten_mapping(self, node: MappingNode) -> None:
        seen: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != MERGE_TAG:
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise _DuplicateKey(key_node.value, key_node.start_mark, seen[ident])
                seen[ident] = key_node.start_mark
        super().flatten_mapping(node)


for _tag in _TAG_WORDS:
    if _tag != "tag:yaml.org,2002:null":
        _Loader.add_constructor(_tag, _typed(_tag))
for _name in _NOT_PLAIN:
    _Loader.add_constructor(f"tag:yaml.org,2002:{_name}", _not_plain)


def mapping_key_text(node: Node) -> str:
    if isinstance(node, ScalarNode):
        return f"`{node.value[:40]}`" if node.value else "(empty)"
    return "(a list)" if isinstance(node, SequenceNode) else "(a mapping)"


def _key_kind(node: Node) -> str:
    if not isinstance(node, ScalarNode):
        return "a list" if isinstance(node, SequenceNode) else "a mapping"
    return _TAG_WORDS.get(node.tag, f"tagged {node.tag}").replace("true or false", "a boolean")


def _children(node: Node) -> list[tuple[Node, yaml.Mark]]:
    """A node's children with where each is referenced from: for an alias, the key holding it (an alias
    shares its anchor's node, so the anchor's own mark would point at the wrong line)."""
    if isinstance(node, SequenceNode):
        return [(child, node.start_mark) for child in node.value]
    if isinstance(node, MappingNode):
        return [pair for k, v in node.value for pair in ((k, k.start_mark), (v, k.start_mark))]
    return []


def _check_expansion(root: Node) -> None:
    """Count the nodes the document would have with every alias expanded, and how deep it nests (through
    aliases); refuse cycles, bombs and nesting deeper than MAX_DEPTH. Iterative: no recursion limit to hit."""
    sizes: dict[int, int] = {}  # node -> its node count, expanded
    heights: dict[int, int] = {}  # node -> levels from it down to its deepest leaf, expanded
    active: set[int] = set()
    # The path from the root: each node with its children (and where each is referenced from) and how many
    # of them were visited. A node shared through aliases is counted once per reference but walked once.
    path: list[tuple[Node, list[tuple[Node, yaml.Mark]], list[int]]] = []

    def too_deep(mark: yaml.Mark) -> _Located:
        return _Located(
            "Y112",
            mark,
            f"mappings and lists nest more than {MAX_DEPTH} levels deep",
            "flatten the structure: an org chart needs a few levels (an alias counts as the nodes it stands for)",
        )

    def enter(node: Node, via: yaml.Mark) -> None:
        if id(node) in active:
            raise _AliasBomb(via, "an alias refers to the node that contains it")
        if len(path) >= MAX_DEPTH:
            raise too_deep(node.start_mark)
        active.add(id(node))
        path.append((node, _children(node), [0]))

    enter(root, root.start_mark)
    while path:
        node, children, visited = path[-1]
        if visited[0] < len(children):
            child, via = children[visited[0]]
            visited[0] += 1
            if id(child) not in sizes:
                enter(child, via)
            elif len(path) + heights[id(child)] > MAX_DEPTH:
                raise too_deep(via)  # where the alias is used
            continue
        path.pop()
        active.discard(id(node))
        total = 1 + sum(sizes[id(child)] for child, _ in children)
        if total > MAX_EXPANDED_NODES:
            raise _AliasBomb(node.start_mark, f"aliases expand to more than {MAX_EXPANDED_NODES:,} nodes")
        sizes[id(node)] = total
        heights[id(node)] = 1 + max((heights[id(child)] for child, _ in children), default=0)


def _may_nest_deeply(text: str) -> bool:
    """Whether the text could nest MAX_DEPTH levels: flow brackets, plus two levels per column of block
    indentation (a block sequence may sit at its key's column, `- - x` opens two levels in four)."""
    budget = (MAX_DEPTH - text.count("[") - text.count("{")) // 2 - 1
    return budget <= 0 or re.search(f"^[ ?:-]{{{budget},}}", text, re.MULTILINE) is not None


def decode(file: str, content: bytes, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, list[Diagnostic]]:
    """Bytes to text, refusing oversized and non-UTF-8 files with a located diagnostic."""
    if len(content) > max_bytes:
        return None, [
            diag(
                "Y104",
                f"file is {len(content):,} bytes, over the {max_bytes:,}-byte cap",
                file=file,
                hint="split it into smaller files; an org-chart file is normally a few kilobytes",
            )
        ]
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        column = exc.start - (content.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [
            diag(
                "Y105",
                f"byte 0x{content[exc.start]:02x} at offset {exc.start} is not valid UTF-8",
                file=file,
                line=line,
                column=column,
                hint="save the file as UTF-8 (binary files do not belong in the org repository)",
            )
        ]
    return text.removeprefix("\ufeff"), []


def parse(file: str, content: bytes, max_bytes: int = MAX_FILE_BYTES) -> tuple[list[ParsedDocument], list[Diagnostic]]:
    """Parse every document of a file. On any error the whole file yields no documents."""
    text, problems = decode(file, content, max_bytes)
    if text is None:
        return [], problems
    loader = _Loader(text)
    loader.text = text
    # An alias needs '*', deep nesting brackets or indentation: skip the walk for the common file.
    loader.check_aliases = "*" in text or _may_nest_deeply(text)
    docs: list[ParsedDocument] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            if data is not None:
                docs.append(ParsedDocument(file, index, node.start_mark.line + 1, data))
            index += 1
    except _DuplicateKey as exc:
        return [], [
            diag(
                "Y102",
                f"duplicate key `{exc.key}` (first defined on line {exc.first.line + 1})",
                file=file,
                line=exc.mark.line + 1,
                column=exc.mark.column + 1,
                hint="remove one of the two; YAML parsers silently keep only the last",
            )
        ]
    except _AliasBomb as exc:
        return [], [
            diag(
                "Y103",
                exc.detail,
                file=file,
                line=exc.mark.line + 1,
                column=exc.mark.column + 1,
                hint="write the values out instead of nesting anchors and aliases",
            )
        ]
    except _Located as exc:
        return [], [_marked(exc.code, exc.message, file, exc.mark, exc.hint)]
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        hint = "use plain YAML data: mappings, lists, strings, numbers, booleans"
        return [], [_marked("Y107", f"{exc.problem}", file, mark, hint)]
    except yaml.MarkedYAMLError as exc:
        return [], [_syntax_error(file, text, exc)]
    except yaml.YAMLError as exc:  # reader errors: a character YAML does not allow
        return [], [_forbidden_character(file, text, exc)]
    finally:
        loader.dispose()
    return docs, []


def _forbidden_character(file: str, text: str, exc: yaml.YAMLError) -> Diagnostic:
    """Y101 at the first character YAML does not allow (the reader reports only a byte offset)."""
    found = _FORBIDDEN.search(text)
    if found is None:  # not a character problem after all: report it at the start of the file
        return diag(
            "Y101",
            str(exc).splitlines()[0],
            file=file,
            line=1,
            column=1,
            hint="check the file's encoding and characters",
        )
    offset = found.start()
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return diag(
        "Y101",
        f"character U+{ord(found.group()):04X} is not allowed in YAML (a control character)",
        file=file,
        line=line,
        column=column,
        hint="remove it; inside a double-quoted string it can be written as an escape such as \\t or \\x07",
    )


def _syntax_error(file: str, text: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    """Y101 at the problem mark; the message names where an unclosed construct began, the hint spots tabs."""
    mark = exc.problem_mark or exc.context_mark
    context = exc.context or ""
    start = exc.context_mark
    if context and start is not None and mark is not None and start.line != mark.line:
        context += f" started on line {start.line + 1}"
    what = ": ".join(p for p in (context, exc.problem) if p)
    hint = "check indentation, quoting and `:` / `-` placement"
    if mark is not None:
        lines = text.splitlines()
        if mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t":
            hint = "indent with spaces: YAML does not allow tab characters in indentation"
    return _marked("Y101", what or "invalid YAML", file, mark, hint)


def _marked(code: str, message: str, file: str, mark: yaml.Mark | None, hint: str) -> Diagnostic:
    line = mark.line + 1 if mark else 1
    column = mark.column + 1 if mark else 1
    return diag(code, message, file=file, line=line, column=column, hint=hint)


class Locator:
    """Exact line/column of a JSON path in a file, composing each file at most once and only on demand."""

    def __init__(self, texts: dict[str, str]) -> None:
        self._texts = texts
        self._nodes: dict[str, list[Node]] = {}

    def _documents(self, file: str) -> list[Node]:
        if file not in self._nodes:
            text = self._texts.get(file)
            self._nodes[file] = list(yaml.compose_all(text, Loader=_BaseLoader)) if text is not None else []
        return self._nodes[file]

    def locate(self, file: str, index: int, path: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        """Position of the node at `path` in document `index`; with key=True, of the mapping key itself.

        A path that does not exist (a missing field) resolves to the deepest existing ancestor.
        """
        docs = self._documents(file)
        if index >= len(docs):
            return 0, 0
        node: Node = docs[index]
        mark = node.start_mark
        last = len(path) - 1
        for i, step in enumerate(path):
            child: Node | None = None
            key_mark = None
            if isinstance(node, MappingNode):
                for k, v in node.value:
                    if isinstance(k, ScalarNode) and k.value == str(step):
                        key_mark, child = k.start_mark, v
                        break
            elif isinstance(node, SequenceNode) and isinstance(step, int) and step < len(node.value):
                child = node.value[step]
            if child is None:
                return mark.line + 1, mark.column + 1
            node = child
            mark = key_mark if (key and i == last and key_mark is not None) else node.start_mark
        return mark.line + 1, mark.column + 1
