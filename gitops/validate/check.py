"""Validate: loaded documents → the org chart plus every diagnostic (envelope, schema, annotations, rules)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from gitops import ANNOTATION_PREFIX, API_VERSION, KINDS
from gitops.diagnostics import Diagnostic, diag, has_errors, sort_key
from gitops.org import Org, Resource
from gitops.settings.model import DEFAULT_SERVER_NAME, Settings
from gitops.source.load import LoadResult, ParseCache
from gitops.source.yamlparse import Locator, ParsedDocument
from gitops.validate import rules, schema

# Annotations this reconciler understands, with the values each accepts (None: any value, checked elsewhere).
ANNOTATIONS: dict[str, tuple[str, ...] | None] = {
    "prune": ("disabled", "enabled"),
    "enforce-state": ("true", "false"),
    "matrix-user-id": None,
}


@dataclass(frozen=True, slots=True)
class Validation:
    org: Org
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


class _Positions:
    """Locates paths inside documents, composing files only when a diagnostic is actually reported."""

    def __init__(self, loaded: LoadResult) -> None:
        self._loaded = loaded
        self._locator: Locator | None = None

    def __call__(self, file: str, index: int, path: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        if self._locator is None:
            self._locator = self._loaded.locator()
        return self._locator.locate(file, index, path, key)


class SettingsChecks(TypedDict):
    server_name: str
    storage_identity: str


def settings_checks(settings: Settings) -> SettingsChecks:
    """What the org rules need to know of the settings, as keyword arguments of `validate` and `read_org`."""
    storage = settings.storage
    return SettingsChecks(server_name=settings.server_name,
                          storage_identity=storage.identity_api if storage else "")


def validate(
    loaded: LoadResult,
    strict: bool = False,
    escapes: Callable[[str], bool] | None = None,
    cache: ParseCache | None = None,
    *,
    server_name: str = DEFAULT_SERVER_NAME,
    storage_identity: str = "",
) -> Validation:
    """Check every document and the org as a whole; never stops at the first problem.

    With a cache, the per-document checks (schema, annotations) are skipped for file contents that passed
    them cleanly before; the org rules always run, since they span documents. `server_name` is the Matrix
    server name of the settings (`matrix.server_name`): Matrix IDs written in the org are compared in full;
    `storage_identity` the store's identity API (`storage.identity`): agents' access keys must suit it.
    Callers with settings pass `**settings_checks(settings)`.
    """
    positions = _Positions(loaded)
    diagnostics = list(loaded.diagnostics)
    declared: dict[str, set[str]] = {k: set() for k in KINDS}
    tables: dict[str, dict[str, Resource]] = {k: {} for k in KINDS}
    first_seen: dict[tuple[str, str], Resource] = {}
    unclean: set[str] = {d.file for d in diagnostics}

    for doc in loaded.documents:
        before = len(diagnostics)
        kind = _envelope(doc, strict, positions, diagnostics)
        if len(diagnostics) != before:
            unclean.add(doc.file)
        if kind is None:
            continue
        source_file = loaded.files.get(doc.file)
        known_clean = cache is not None and source_file is not None and cache.is_clean(source_file.blob_id)
        data = doc.data
        meta = data.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if isinstance(name, str):
            declared[kind].add(name)

        def locate(path: Sequence[str | int], key: bool, d: ParsedDocument = doc) -> tuple[int, int]:
            return positions(d.file, d.index, path, key)

        problems = [] if known_clean else schema.check(kind, data, doc.file, locate)
        if "status" in data:
            line, column = locate(["status"], True)
            problems.append(
                diag(
                    "K204",
                    "the `status` block is ignored; status is written by the reconciler, not read from the repository",
                    file=doc.file,
                    line=line,
                    column=column,
                    path="$.status",
                    hint="remove `status` from the file",
                )
            )
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(annotations, dict):
            problems.extend(_annotations(kind, annotations, doc.file, locate))
        diagnostics.extend(problems)
        if problems:
            unclean.add(doc.file)
        if has_errors(problems) or not isinstance(name, str):
            continue
        res = Resource(kind, name, data["spec"], dict(annotations or {}), doc.file, doc.index, doc.line)
        previous = first_seen.get((kind, name))
        if previous is not None:
            line, column = locate(["metadata", "name"], False)
            diagnostics.append(
                diag(
                    "R401",
                    f"{kind} `{name}` is declared twice (first at {previous.file}:{previous.line})",
                    file=doc.file,
                    line=line,
                    column=column,
                    path="$.metadata.name",
                    hint="remove one of the two declarations, or rename one",
                )
            )
            continue
        first_seen[(kind, name)] = res
        tables[kind][name] = res

    org = Org(tables["Worker"], tables["Team"], tables["Human"], tables["Manager"])
    ctx = rules.Context(
        org=org,
        declared=declared,
        locate=lambda res, path, key: positions(res.file, res.index, path, key),
        escapes=escapes or (lambda _path: False),
        unreadable=has_errors(diagnostics),
        server_name=server_name,
        storage_identity=storage_identity,
    )
    diagnostics.extend(rules.check(ctx))
    if cache is not None:
        for path, f in loaded.files.items():
            if path not in unclean:
                cache.mark_clean(f.blob_id)
    return Validation(org, sorted(diagnostics, key=sort_key))


def _envelope(
    doc: ParsedDocument,
    strict: bool,
    positions: Callable[[str, int, Sequence[str | int], bool], tuple[int, int]],
    out: list[Diagnostic],
) -> str | None:
    """The document's kind if it is ours to validate; otherwise report why not and return None."""
    data: Any = doc.data
    if not isinstance(data, dict):
        out.append(
            diag(
                "Y106",
                f"document {doc.index + 1} is {_what(data)}, not a mapping",
                file=doc.file,
                line=doc.line,
                column=1,
                hint="each document needs apiVersion, kind, metadata and spec",
            )
        )
        return None
    api, kind = data.get("apiVersion"), data.get("kind")
    if api is None or kind is None:
        missing = " and ".join(f"`{k}`" for k, v in (("apiVersion", api), ("kind", kind)) if v is None)
        out.append(
            diag("K201", f"document {doc.index + 1} has no {missing}", file=doc.file, line=doc.line, column=1,
                 hint=f"start the document with apiVersion: {API_VERSION} and kind: Worker|Team|Human|Manager")
        )
        return None
    if api != API_VERSION:
        line, column = positions(doc.file, doc.index, ["apiVersion"], False)
        close = isinstance(api, str) and api.lower().startswith("hiclaw.io/")
        out.append(
            diag(
                "K202",
                f"apiVersion `{api}` is not {API_VERSION}; the document is skipped",
                file=doc.file, line=line, column=column, path="$.apiVersion",
                hint=f"use apiVersion: {API_VERSION}"
                if close
                else "move non-HiClaw files out of the org root or list them in .hiclawignore",
                severity="error" if strict or close else "warning",
            )
        )
        return None
    if kind not in KINDS:
        line, column = positions(doc.file, doc.index, ["kind"], False)
        match = [k for k in KINDS if isinstance(kind, str) and k.lower() == kind.lower()]
        similar = match or difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.5)
        out.append(
            diag(
                "K203",
                f"unknown kind `{kind}`",
                file=doc.file, line=line, column=column, path="$.kind",
                hint=f"did you mean `{similar[0]}`?" if similar else "kind is one of: " + ", ".join(KINDS),
            )
        )
        return None
    return str(kind)


def _annotations(
    kind: str, annotations: dict[str, Any], file: str, locate: Callable[[Sequence[str | int], bool], tuple[int, int]]
) -> list[Diagnostic]:
    out = []
    known = "known: " + ", ".join(ANNOTATION_PREFIX + a for a in ANNOTATIONS)
    for key, value in annotations.items():
        if not isinstance(key, str) or not key.startswith(ANNOTATION_PREFIX):
            continue
        short = key[len(ANNOTATION_PREFIX):]
        path = ["metadata", "annotations", key]
        line, column = locate(path, True)
        where = {"file": file, "line": line, "column": column, "path": schema.json_path(path)}
        if short not in ANNOTATIONS:
            close = difflib.get_close_matches(short, list(ANNOTATIONS), n=1, cutoff=0.6)
            out.append(diag("K205", f"unknown annotation `{key}`",
                            hint=f"did you mean `{ANNOTATION_PREFIX}{close[0]}`?" if close else known, **where))
            continue
        if short == "matrix-user-id" and kind != "Human":
            hint = "remove it: only a Human has a Matrix account of its own"
            out.append(diag("K206", f"`{key}` only applies to Humans", hint=hint, **where))
            continue
        if not isinstance(value, str):
            continue  # the schema reports the type (S303): annotation values are strings
        line, column = locate(path, False)
        at_value = {**where, "line": line, "column": column}
        allowed = ANNOTATIONS[short]
        if allowed is not None and value not in allowed:
            values = ", ".join(allowed)
            message = f"`{key}` is {value!r}; allowed: {values}"
            out.append(diag("K206", message, hint=f"use one of: {values}", **at_value))
        if short == "matrix-user-id" and not rules.MXID.match(value):
            hint = "write @localpart:server, e.g. @john:matrix.example.com"
            out.append(diag("K206", f"`{key}` {value!r} is not a Matrix user ID", hint=hint, **at_value))
    return out


def _what(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"
