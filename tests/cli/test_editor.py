"""Editor and hook support: one schema for all four kinds (self-contained, every $id and $ref resolvable), the
documented modeline and VS Code settings, and the pre-commit hook."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gitops import KINDS
from gitops.cli import main
from gitops.editor_schema import ORG_SCHEMA_ID, kind_schema, render

from .conftest import EXAMPLE, cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
ORG_SCHEMA = SCHEMAS / "org.schema.json"
DOCS = ROOT / "docs" / "editors.md"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
UPSTREAM = ROOT / "tests" / "fixtures" / "upstream_examples"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_file_is_what_the_builder_makes(capsys: pytest.CaptureFixture[str]) -> None:
    regenerate = "regenerate: hiclaw-gitops schema > schemas/org.schema.json"
    assert ORG_SCHEMA.read_text(encoding="utf-8") == render(), regenerate
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == render()


def test_every_id_is_unique_and_names_its_file_and_every_ref_resolves() -> None:
    schemas = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SCHEMAS.glob("*.schema.json"))}
    assert "org.schema.json" in schemas
    ids = [s["$id"] for s in schemas.values()]
    assert len(set(ids)) == len(ids)
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012)) for s in schemas.values())
    for name, schema in schemas.items():
        assert schema["$id"] == f"https://hiclaw.io/schemas/gitops/{name}"
        Draft202012Validator.check_schema(schema)
        resolver = registry.resolver(base_uri=schema["$id"])
        for ref in _refs(schema):
            assert ref.startswith("#/"), f"{name}: {ref} leaves the document"
            resolver.lookup(ref)  # raises when it does not resolve


def test_the_org_schema_stands_alone() -> None:
    schema = json.loads(ORG_SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == ORG_SCHEMA_ID
    lone: Registry[Any] = Registry().with_resource(ORG_SCHEMA_ID, Resource.from_contents(schema))
    resolver = lone.resolver(base_uri=ORG_SCHEMA_ID)
    for ref in _refs(schema):
        resolver.lookup(ref)
    assert {f"{k}" for k in KINDS} <= set(schema["$defs"])


def _documents() -> Iterator[tuple[str, Any]]:
    for path in sorted([*EXAMPLE.rglob("*.yaml"), *UPSTREAM.glob("*.yaml")]):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            continue
        for i, doc in enumerate(docs):
            if isinstance(doc, dict) and doc.get("kind") in KINDS and doc.get("apiVersion") == "hiclaw.io/v1beta1":
                yield f"{path.name}#{i}", doc


def test_it_judges_every_document_as_the_kind_schemas_do() -> None:
    org = Draft202012Validator(json.loads(ORG_SCHEMA.read_text(encoding="utf-8")))
    per_kind = {k: Draft202012Validator(kind_schema(k)) for k in KINDS}
    seen = {True: 0, False: 0}
    for where, doc in _documents():
        verdict = per_kind[doc["kind"]].is_valid(doc)
        assert org.is_valid(doc) is verdict, where
        seen[verdict] += 1
    assert seen[True] >= 10 and seen[False] >= 5  # both verdicts are exercised


def test_the_kind_selects_the_schema() -> None:
    org = Draft202012Validator(json.loads(ORG_SCHEMA.read_text(encoding="utf-8")))
    human = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Human", "metadata": {"name": "bob"},
             "spec": {"displayName": "Bob", "permissionLevel": 1}}
    assert org.is_valid(human)
    assert not org.is_valid({**human, "kind": "Worker"})  # a Worker has no displayName, needs a model
    assert not org.is_valid({**human, "kind": "Robot"})
    assert not org.is_valid({k: v for k, v in human.items() if k != "kind"})


def test_the_documented_modeline_and_vscode_settings(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    modeline = re.search(r"^# yaml-language-server: \$schema=(\S+)$", text, re.M)
    assert modeline is not None
    assert "hiclaw-gitops schema > .hiclaw/org.schema.json" in text
    # The modeline's path, relative to a file in org/workers/, is the copy the docs tell users to make.
    worker = tmp_path / "org" / "workers" / "alice.yaml"
    assert (worker.parent / modeline.group(1)).resolve() == (tmp_path / "org" / ".hiclaw" / "org.schema.json")
    settings = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))  # type: ignore[union-attr]
    assert "./.hiclaw/org.schema.json" in settings["yaml.schemas"]
    # the sample in the docs is a valid Worker for the schema and for validate
    sample = yaml.safe_load(re.search(r"```yaml\n(# yaml-language-server.*?)```", text, re.S).group(1))  # type: ignore[union-attr]
    assert Draft202012Validator(json.loads(ORG_SCHEMA.read_text(encoding="utf-8"))).is_valid(sample)


def test_the_pre_commit_hook_runs_validate_on_the_whole_org(repo: Path) -> None:
    hooks = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    assert [h["id"] for h in hooks] == ["hiclaw-gitops-validate"]
    hook = hooks[0]
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    for path in ("org/workers/a.yaml", "teams/t.yml", ".hiclawignore", "org/.hiclawignore"):
        assert files.search(path), path
    for path in ("README.md", "org/notes.txt", "plan.json"):
        assert not files.search(path), path
    argv = shlex.split(hook["entry"])
    assert argv[0] == "hiclaw-gitops"
    # run as pre-commit does (entry + the user's args, no file names) from the repository root
    assert cli(*argv[1:], "--path", "org", cwd=repo).returncode == 0
    (repo / "org/workers/broken.yaml").write_text("apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata: {}\n")
    assert cli(*argv[1:], "--path", "org", cwd=repo).returncode == 1


def test_the_documented_single_file_check(repo: Path) -> None:
    shutil.copy(EXAMPLE / "humans/priya.yaml", repo / "org/humans/priya.yaml")
    (repo / "org/humans/bob.yaml").write_text(
        "apiVersion: hiclaw.io/v1beta1\nkind: Human\nmetadata:\n  name: bob\nspec:\n  displayName: Bob\n"
        "  permissionLevel: 1\n  colour: red\n")
    done = cli("validate", "org/humans/bob.yaml", "--path", "org", cwd=repo)
    assert done.returncode == 1
    assert done.stdout.startswith("org/humans/bob.yaml:8:3: error[S301]: unknown field `colour` in `spec`")
    assert "org/humans/bob.yaml:8:3: error[S301]: unknown field `colour` in `spec`" in DOCS.read_text()
