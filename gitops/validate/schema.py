"""Schema layer of validation: JSON Schema errors turned into located diagnostics with fix hints."""

from __future__ import annotations

import datetime
import difflib
import hashlib
import json
import marshal
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastjsonschema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

from gitops.diagnostics import Diagnostic, diag

NAME_PATTERN = "^[a-z0-9][a-z0-9-]*$"
NAME_HINT = "use lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters"

# Locate(path, key) -> (line, column) inside the document being checked.
Locate = Callable[[Sequence[str | int], bool], tuple[int, int]]

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}

# Hints for mistakes people make often, keyed by (last path element of the parent, field).
_SPECIAL_UNKNOWN = {
    ("leader", "runtime"): "team leaders always run the leader runtime (copaw upstream); remove `runtime`",
    ("leader", "image"): "the leader's image follows the leader runtime; remove `image`",
    ("leader", "skills"): "upstream leaders have no `skills`; give skills to the team's workers",
    ("leader", "expose"): "upstream leaders cannot expose ports; expose them on a worker",
}


def schema_dir() -> Path:
    """Where the kind schemas live: inside the installed package, or the repository's schemas/."""
    packaged = Path(__file__).resolve().parents[1] / "_schemas"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "schemas"


@cache
def _schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((schema_dir() / f"{kind.lower()}.schema.json").read_text("utf-8"))
    return loaded


@cache
def validator_for(kind: str) -> Draft202012Validator:
    """The thorough validator, used once a document is known to be invalid (jsonschema is imported then)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema(kind), format_checker=Draft202012Validator.FORMAT_CHECKER)


def json_path(path: Iterable[str | int]) -> str:
    out = "$"
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out


@cache
def fast_validator_for(kind: str) -> Callable[[Any], Any]:
    """A compiled validator for the common case (a valid document): ~10x faster, first error only.

    Our schemas use only keywords whose meaning is the same in draft-07 and 2020-12, so fastjsonschema's
    draft-07 code generator applies. It must not fill in defaults: parsed documents are shared and immutable.
    """
    schema = _positive(_schema(kind))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return _compiled_validator(schema)


def _compiled_validator(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """fastjsonschema's validator for `schema`, its generated code kept compiled in the user's cache folder:
    generating and compiling it costs about 0.25 s in every process, loading it a millisecond. The cache
    entry is named by a digest of the schema, fastjsonschema's version and Python's; a missing, damaged or
    unwritable cache only costs that time."""
    digest = hashlib.sha256(
        json.dumps([schema, fastjsonschema.VERSION, sys.version], sort_keys=True).encode()
    ).hexdigest()[:24]
    path = _cache_dir() / f"validator-{digest}.marshal"
    try:
        name, code = marshal.loads(path.read_bytes())
        namespace: dict[str, Any] = {}
        exec(code, namespace)
        found: Callable[[Any], Any] = namespace[name]
        return found
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        pass
    text = fastjsonschema.compile_to_code(schema, use_default=False)
    entry = re.search(r"^def (validate\w*)\(", text, re.MULTILINE)
    if entry is None:  # not the code this version of fastjsonschema is known to write
        return fastjsonschema.compile(schema, use_default=False)
    code = compile(text, f"<schema validator {digest}>", "exec")
    namespace = {}
    exec(code, namespace)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".validator-") as tmp:
            tmp.write(marshal.dumps((entry.group(1), code)))
        os.replace(tmp.name, path)
    except OSError:
        pass
    compiled: Callable[[Any], Any] = namespace[entry.group(1)]
    return compiled


def _cache_dir() -> Path:
    """`HICLAW_GITOPS_CACHE_DIR`, else `$XDG_CACHE_HOME/hiclaw-gitops`, else `~/.cache/hiclaw-gitops`."""
    explicit = os.environ.get("HICLAW_GITOPS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hiclaw-gitops"


def _positive(schema: Any) -> Any:
    """A copy where `{"type": "string", "not": {"pattern": "^p"}}` reads `{"type": "string", "pattern": "^(?!p)"}`.

    The same set of valid documents, but fastjsonschema checks `not` by raising and catching an exception
    with a formatted message for every valid value (a skill name, in every worker), and a look-ahead costs
    nothing. Only the fast path uses the copy: error messages still come from the schema as written.
    """
    if isinstance(schema, list):
        return [_positive(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _positive(v) for k, v in schema.items()}
    negated = out.get("not")
    if (
        out.get("type") == "string"
        and "pattern" not in out
        and isinstance(negated, dict)
        and set(negated) == {"pattern"}
        and isinstance(negated["pattern"], str)
        and negated["pattern"].startswith("^")
        and "|" not in negated["pattern"]
    ):
        del out["not"]
        out["pattern"] = "^(?!" + negated["pattern"][1:] + ")"
    return out


def check(kind: str, data: Any, file: str, locate: Locate) -> list[Diagnostic]:
    """Every schema violation of one document, each located at the offending key or value."""
    try:
        fast_validator_for(kind)(data)
        return []
    except fastjsonschema.JsonSchemaValueException:
        pass  # collect every error, with paths, the thorough way
    validator = validator_for(kind)
    found: list[Diagnostic] = []
    seen: set[tuple[str, str]] = set()
    for error in validator.iter_errors(data):
        for d in _translate(error, file, locate):
            if (d.path, d.message) not in seen:
                seen.add((d.path, d.message))
                found.append(d)
    return found


def _translate(e: ValidationError, file: str, locate: Locate) -> list[Diagnostic]:
    path = list(e.absolute_path)
    schema: dict[str, Any] = e.schema if isinstance(e.schema, dict) else {}
    field = _field_label(path)

    def at(p: Sequence[str | int], key: bool = False) -> dict[str, Any]:
        line, column = locate(p, key)
        return {"file": file, "line": line, "column": column, "path": json_path(p)}

    kw = e.validator
    if kw == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        parent = _field_label(path) if path else ""
        out = []
        for extra in sorted(set(e.instance) - set(allowed), key=str):
            p = [*path, extra]
            out.append(
                diag(
                    "S301",
                    f"unknown field `{extra}`" + (f" in `{parent}`" if parent else ""),
                    hint=_SPECIAL_UNKNOWN.get((parent, str(extra))) or _suggest(str(extra), allowed, "field"),
                    **at(p, key=True),
                )
            )
        return out
    if kw == "required":
        m = re.match(r"^'(.+)' is a required property$", e.message)
        missing = m.group(1) if m else str(e.validator_value)
        where = f"`{field}`" if path else "the document"
        message = f"missing required field `{missing}` in {where}"
        return [diag("S302", message, hint=_describe(schema, missing), **at(path, key=True))]
    if kw == "type":
        want = e.validator_value if isinstance(e.validator_value, str) else e.validator_value[0]
        got = _type_word(e.instance)
        return [
            diag(
                "S303",
                f"`{field}` must be {_TYPE_WORDS.get(want, want)}, not {got}",
                hint=_type_hint(want, e.instance, schema, field),
                **at(path),
            )
        ]
    if kw in ("enum", "const"):
        allowed_values = list(e.validator_value) if kw == "enum" else [e.validator_value]
        shown = ", ".join(str(v) for v in allowed_values)
        return [
            diag(
                "S304",
                f"`{field}` is {e.instance!r}; allowed: {shown}",
                hint=_suggest(str(e.instance), [str(v) for v in allowed_values], "value") or f"use one of: {shown}",
                **at(path),
            )
        ]
    if _is_name_rule(kw, schema):
        return [diag("S305", f"`{field}` value {e.instance!r} is not a valid name", hint=NAME_HINT, **at(path))]
    if kw == "propertyNames" or list(e.relative_schema_path)[-2:-1] == ["propertyNames"]:
        # jsonschema reports a bad key as the failing keyword inside propertyNames, at the parent's path
        return [
            diag(
                "S306",
                f"`{e.instance}` is not a valid key in `{field}`",
                hint="environment variable names are letters, digits and '_', not starting with a digit",
                **at([*path, e.instance], key=True),
            )
        ]
    return [diag("S306", _constraint_message(e, field), hint=_constraint_hint(e, field), **at(path))]


def _field_label(path: Sequence[str | int]) -> str:
    """`mcpServers[1]` for list items, the key itself for mapping values."""
    if not path:
        return "document"
    if isinstance(path[-1], int):
        return f"{_field_label(path[:-1])}[{path[-1]}]"
    return str(path[-1])


def _is_name_rule(kw: Any, schema: dict[str, Any]) -> bool:
    return kw in ("pattern", "maxLength", "minLength") and schema.get("pattern") == NAME_PATTERN


def _constraint_message(e: ValidationError, field: str) -> str:
    kw, value = e.validator, e.validator_value
    if kw == "minimum":
        return f"`{field}` is {e.instance}; the minimum is {value}"
    if kw == "maximum":
        return f"`{field}` is {e.instance}; the maximum is {value}"
    if kw == "minItems":
        return f"`{field}` needs at least {value} item{'s' if value != 1 else ''}"
    if kw == "pattern":
        return f"`{field}` value {e.instance!r} does not match the pattern {value}"
    if kw == "format":
        return f"`{field}` value {e.instance!r} is not a valid {value}"
    if kw == "not" and isinstance(e.instance, str) and e.instance.startswith("nacos://"):
        return f"`{e.instance}` is a remote skill, not a built-in skill name"
    return f"`{field}`: {e.message}"


def _constraint_hint(e: ValidationError, field: str) -> str:
    kw, value = e.validator, e.validator_value
    schema: dict[str, Any] = e.schema if isinstance(e.schema, dict) else {}
    if kw == "not" and isinstance(e.instance, str) and e.instance.startswith("nacos://"):
        return "list nacos:// skills under `remoteSkills` with `source` and `skills`"
    if kw == "pattern" and field == "source":
        return "write the source as nacos://host[:port]/namespace-id"
    if kw in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"use a value from {low} to {high}"
        return f"use a value of at least {low}" if kw == "minimum" else f"use a value of at most {high}"
    if kw == "minItems":
        return f"add at least {value} item{'s' if value != 1 else ''}, or remove `{field}`"
    if kw == "format" and value == "email":
        return "write an address such as name@example.com"
    if kw == "pattern":
        return f"write a value matching {value}"
    described = f": {schema['description']}" if schema.get("description") else ""
    return f"see the schema's description of `{field}`{described}"


def _type_hint(want: str, value: Any, schema: dict[str, Any], field: str) -> str:
    """How to write the value with the type the schema wants, from what was written."""
    if want == "object" and isinstance(value, str) and schema.get("properties"):
        hint = f"write `{field}` as a mapping with fields: {', '.join(sorted(schema['properties']))}"
        req = schema.get("required")
        return hint + (f" (required: {', '.join(req)})" if req else "")
    if want == "string" and isinstance(value, bool):
        return "quote the value: unquoted true/false/yes/no/on/off are booleans in YAML"
    if want == "string" and isinstance(value, (int, float, datetime.date)):
        return f'quote the value: "{_yaml_scalar(value)}"'
    if want in ("integer", "number") and isinstance(value, str) and _is_number(value, want):
        return f"remove the quotes: {value.strip()}"
    if want == "boolean" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return f"remove the quotes: {value.strip().lower()}"
    if want == "array" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return f"write a list, e.g. [{_yaml_scalar(value)}]"
    return f"write {_TYPE_WORDS.get(want, want)}"


def _is_number(text: str, want: str) -> bool:
    try:
        int(text) if want == "integer" else float(text)
    except ValueError:
        return False
    return True


def _describe(schema: dict[str, Any], name: str) -> str:
    prop = schema.get("properties", {}).get(name, {})
    desc = prop.get("description", "") if isinstance(prop, dict) else ""
    return f"add `{name}`" + (f": {desc.strip().splitlines()[0]}" if desc else "")


def _suggest(word: str, choices: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if what == "field" and choices:
        return f"allowed fields here: {', '.join(choices)}"
    return ""


def _type_word(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, datetime.date):
        return "a date"  # YAML reads an unquoted 2024-01-31 as a date
    return "empty" if value is None else type(value).__name__


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)
