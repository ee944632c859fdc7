"""Parse one YAML file into plain documents fast (libyaml), and locate any JSON path's line on demand.

Parsing is the hot path: it uses libyaml's C parser with PyYAML's safe constructor, plus two guards
that plain `yaml.safe_load` lacks — duplicate keys (PyYAML silently keeps the last) and alias expansion
bombs. Line numbers are not kept for every node; `Locator` re-composes a file only when a diagnostic
needs an exact position, which is rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitops.diagnostics import Diagnostic, diag

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 1 << 20  # 1 MiB: an org-chart file is a few KiB; larger is a mistake or an attack
MAX_EXPANDED_NODES = 100_000  # a document's node count after alias expansion
MERGE_TAG = "tag:yaml.org,2002:merge"


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


class _Loader(_BaseLoader):  # type: ignore[misc,unused-ignore]
    """Safe loader that refuses duplicate keys and checks alias expansion before constructing."""

    check_aliases = False

    def construct_document(self, node: Node) -> Any:
        if self.check_aliases:
            _check_expansion(node)
        return super().construct_document(node)

    def flatten_mapping(self, node: MappingNode) -> None:
        seen: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != MERGE_TAG:
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise _DuplicateKey(key_node.value, key_node.start_mark, seen[ident])
                seen[ident] = key_node.start_mark
        super().flatten_mapping(node)


def _check_expansion(root: Node) -> None:
    """Count the nodes the document would have with every alias expanded; refuse cycles and bombs."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node, via: yaml.Mark) -> int:
        # `via` is where the node is referenced from: for an alias, the key holding it (an alias shares
        # its anchor's node, so the anchor's own mark would point at the wrong line).
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _AliasBomb(via, "an alias refers to the node that contains it")
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child, node.start_mark) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k, k.start_mark) + size(v, k.start_mark) for k, v in node.value)
        active.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise _AliasBomb(node.start_mark, f"aliases expand to more than {MAX_EXPANDED_NODES:,} nodes")
        sizes[key] = total
        return total

    size(root, root.start_mark)


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
    loader.check_aliases = "*" in text  # an alias needs '*': skip the walk for the common file
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
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        hint = "use plain YAML data: mappings, lists, strings, numbers, booleans"
        return [], [_marked("Y107", f"{exc.problem}", file, mark, hint)]
    except yaml.MarkedYAMLError as exc:
        return [], [_syntax_error(file, text, exc)]
    except yaml.YAMLError as exc:  # e.g. reader errors on control characters
        mark = getattr(exc, "problem_mark", None)
        return [], [_marked("Y101", str(exc).splitlines()[0], file, mark, "remove control characters from the file")]
    finally:
        loader.dispose()
    return docs, []


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
    line = mark.line + 1 if mark else 0
    column = mark.column + 1 if mark else 0
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
