"""Fast paths taken for performance produce exactly what their plain definitions do."""

from __future__ import annotations

import gc
import json
import pickle
from typing import Any

import fastjsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops.gcpause import paused_gc
from gitops.objects import ManagedObject, Provider, canonical_json, pretty_json, spec_digest, spec_hash
from gitops.plan.model import REDACTED, diff_specs, redact
from gitops.validate import schema

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
KEYS = st.text() | st.integers()  # non-string keys: json.dumps converts them, pretty_json hands them over
JSON_LIKE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(), inner)
    | st.dictionaries(KEYS, inner),
    max_leaves=30,
)


def _outcome(render: Any, value: Any) -> tuple[str, str]:
    try:
        return "ok", render(value)
    except (TypeError, ValueError) as exc:
        return "error", type(exc).__name__


@settings(max_examples=400, deadline=None)
@given(JSON_LIKE)
def test_pretty_json_is_json_dumps_with_indent(value: Any) -> None:
    expected = _outcome(lambda v: json.dumps(v, sort_keys=True, indent=2, ensure_ascii=False), value)
    assert _outcome(pretty_json, value) == expected


@settings(max_examples=200, deadline=None)
@given(JSON_LIKE)
def test_canonical_json_is_json_dumps(value: Any) -> None:
    expected = _outcome(lambda v: json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False), value)
    assert _outcome(canonical_json, value) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(SCALARS | st.sampled_from(["a", "b", 1, True])), st.lists(SCALARS | st.sampled_from(["a", "b", 1])))
def test_list_diffs_are_the_quadratic_definition(old: list[Any], new: list[Any]) -> None:
    got = diff_specs({"x": old}, {"x": new})
    if old == new:
        assert got == []
        return
    removed = [v for v in old if v not in new]
    added = [v for v in new if v not in old]
    if removed or added:
        assert [(d.op, d.old, d.new) for d in got] == [("remove", v, None) for v in removed] + [
            ("add", None, v) for v in added
        ]
    else:
        assert [d.op for d in got] == ["change"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12) | st.sampled_from(["nacos://x/y", "nacos:/", "git", "nacos://"]), max_size=3))
def test_the_fast_schema_accepts_exactly_what_the_schema_accepts(skills: list[str]) -> None:
    document = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker", "metadata": {"name": "w"},
                "spec": {"model": "m", "skills": skills}}
    valid = schema.validator_for("Worker").is_valid(document)
    try:
        schema.fast_validator_for("Worker")(document)
        fast = True
    except fastjsonschema.JsonSchemaValueException:
        fast = False
    assert fast == valid


def test_managed_objects_survive_pickling_whole() -> None:
    obj = ManagedObject(Provider.STORAGE, "object", "agents/a/SOUL.md", {"content": "x"}, "Worker/a", ("k",), False)
    again = pickle.loads(pickle.dumps(obj))
    assert (again, again.hash, again.key) == (obj, obj.hash, obj.key)


def test_paused_collection_resumes_as_it_was() -> None:
    assert gc.isenabled()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause is still on
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def _redact_definition(value: Any, key: str = "") -> Any:
    """The plain definition: copy everything, mask a non-empty, non-reference string under a secret-named key."""
    if isinstance(value, dict):
        return {k: _redact_definition(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_definition(v, key) for v in value]
    secretish = any(word in key.lower() for word in ("password", "secret", "token", "apikey", "api_key",
                                                      "credential", "private"))
    if isinstance(value, str) and value and secretish and not value.startswith("secret://"):
        return REDACTED
    return value


SECRETISH = st.sampled_from(["password", "apiKey", "x_token", "name", "env", "PRIVATE_KEY", "members"])
SPECS = st.recursive(
    SCALARS | st.sampled_from(["secret://matrix/a/token", "hunter2"]),
    lambda inner: st.lists(inner) | st.tuples(inner, inner) | st.dictionaries(SECRETISH | st.text(), inner),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(SPECS, SECRETISH | st.text())
def test_redact_is_its_definition_and_never_touches_its_input(value: Any, key: str) -> None:
    before = pickle.dumps(value)
    got = redact(value, key)
    assert json.dumps(got, sort_keys=True) == json.dumps(_redact_definition(value, key), sort_keys=True)
    assert pickle.dumps(value) == before  # the input is not changed


TRICKY = st.sampled_from(['a"token', 'password":"x', "\\", ",", '{"', "secret://x", "", "Api_Key", "tokens"])
TRICKY_SPECS = st.recursive(
    SCALARS | TRICKY,
    lambda inner: st.lists(inner) | st.dictionaries(SECRETISH | TRICKY | st.text(), inner),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(SECRETISH | TRICKY | st.text(), TRICKY_SPECS, max_size=6))
def test_a_spec_found_plain_needs_no_redaction(spec: dict[str, Any]) -> None:
    """`ManagedObject.plain` lets the plan skip redaction: it must never be True when redaction would mask."""
    digest, plain = spec_digest(spec)
    assert digest == spec_hash(spec)
    if plain:
        assert json.dumps(redact(spec), sort_keys=True) == json.dumps(spec, sort_keys=True)
    assert ManagedObject(Provider.STORAGE, "object", "k", spec, "org").plain == plain
