"""Examples shaped like the upstream HiClaw documentation: the valid ones validate cleanly, the others fail precisely.

The fixtures (`fixtures/upstream_examples/`, beside this file) were written for this project. They copy no
upstream text; they reproduce the shapes upstream users write — every kind, the nesting of Team leaders and
workers, multi-document files, comments before `apiVersion`, Markdown inside block scalars, non-ASCII text,
fragments, the older design-proposal schema (`mcpServers` as plain names) — and, in the `coverage` group,
every `spec` field the upstream CRDs accept. The `rejected` group holds shapes the upstream CRDs reject.

Each fixture's first two lines are its group and its expected result alone (`# group: …`,
`# expect alone: …`); the tables below say the same and a test keeps the two in step. A group's fixtures are
alternatives, like the examples of one upstream page: they are checked together with their collisions
pinned, and complete orgs are assembled from them, which must validate without a single diagnostic.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.diagnostics import Diagnostic
from gitops.source.files import DirectorySource
from gitops.source.load import load
from gitops.validate.check import Validation, validate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream_examples"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"

Found = list[tuple[str, str, int]]  # (code, file, line)

# Each fixture alone: exactly these diagnostics (code, line). A Human alone names Teams and Workers that are
# not there, which is itself a precise result worth pinning.
ALONE: dict[str, list[tuple[str, int]]] = {
    # intro: one announcement-style Worker in the older schema
    "intro__worker-quick.yaml": [("S303", 12)],  # mcpServers: [jira]
    # reference: one complete org, one resource per file
    "reference__worker-persona.yaml": [],
    "reference__worker-package.yaml": [],
    "reference__team-leader-heartbeat.yaml": [],
    "reference__manager-config.yaml": [],
    "reference__human-team-scoped.yaml": [("R405", 11)],  # platform-team
    # proposal: the design-proposal shapes, alternatives that collide when put together
    "proposal__worker-string-mcp.yaml": [("S303", 16)],  # - confluence
    "proposal__team-packages.yaml": [],
    "proposal__human-placeholder.yaml": [("R405", 11), ("R406", 12)],  # research-team, example-worker-1
    "proposal__team-with-human.yaml": [],  # two documents
    # import: a saved file with comment lines before apiVersion
    "import__worker-file.yaml": [],
    # cluster: the Kubernetes-native page, including a fragment
    "cluster__fragment.yaml": [("K201", 3)],  # apiVersion only
    "cluster__worker-expose.yaml": [],
    "cluster__team-peers.yaml": [],
    "cluster__human-cross-doc.yaml": [("R405", 11), ("R406", 12)],  # mobile-team, ops-bot
    "cluster__manager.yaml": [],
    # coverage: every spec field upstream accepts, on every kind
    "coverage__worker-every-field.yaml": [],
    "coverage__team-every-field.yaml": [],  # three documents: the Team, its admin and its member
    "coverage__human-worker-only.yaml": [("R406", 13)],  # data-steward
    "coverage__manager-every-field.yaml": [],
    # rejected: shapes the upstream CRDs refuse
    "rejected__leader-runtime.yaml": [("S301", 12), ("S301", 13)],  # leader runtime, leader skills
    "rejected__manager-hermes.yaml": [("S304", 9)],
    "rejected__manager-registry-access.yaml": [("S304", 10)],
    "rejected__nacos-in-skills.yaml": [("S306", 11)],
    "rejected__remote-skill-source.yaml": [("S306", 10), ("S306", 11)],  # no namespace; skills: []
}
FIXTURE_COUNT = 25

# All fixtures of one group together.
BY_GROUP: dict[str, Found] = {
    "intro": [("S303", "intro__worker-quick.yaml", 12)],
    "reference": [],
    "proposal": [
        ("R401", "proposal__team-with-human.yaml", 6),  # Team research-team again (first in team-packages)
        ("R401", "proposal__team-with-human.yaml", 18),  # Human lin again (first in human-placeholder)
        ("R406", "proposal__human-placeholder.yaml", 12),  # example-worker-1 is a placeholder name
        ("S303", "proposal__worker-string-mcp.yaml", 16),
    ],
    "import": [],
    "cluster": [
        ("K201", "cluster__fragment.yaml", 3),
        ("R403", "cluster__team-peers.yaml", 22),  # team member `kai` has the name of the standalone Worker kai
        ("R406", "cluster__human-cross-doc.yaml", 12),  # ops-bot is declared in the reference group
    ],
    "coverage": [],
    "rejected": [
        ("S301", "rejected__leader-runtime.yaml", 12),
        ("S301", "rejected__leader-runtime.yaml", 13),
        ("S304", "rejected__manager-hermes.yaml", 9),
        ("S304", "rejected__manager-registry-access.yaml", 10),
        ("S306", "rejected__nacos-in-skills.yaml", 11),
        ("S306", "rejected__remote-skill-source.yaml", 10),
        ("S306", "rejected__remote-skill-source.yaml", 11),
    ],
}

# Complete orgs built from the fixtures, plus what they reference: each validates cleanly.
EXAMPLE_WORKER_1 = """\
apiVersion: hiclaw.io/v1beta1
kind: Worker
metadata:
  name: example-worker-1
spec:
  model: qwen3.6-plus
"""
COMPLETE_ORGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "reference": (
        [
            "reference__worker-persona.yaml",
            "reference__worker-package.yaml",
            "reference__team-leader-heartbeat.yaml",
            "reference__manager-config.yaml",
            "reference__human-team-scoped.yaml",
        ],
        {},
    ),
    "proposal: team and human": (
        ["proposal__team-packages.yaml", "proposal__human-placeholder.yaml"],
        {"example-worker-1.yaml": EXAMPLE_WORKER_1},
    ),
    "proposal: one file": (["proposal__team-with-human.yaml"], {}),
    "import": (["import__worker-file.yaml"], {}),
    "cluster: team, human, manager": (
        [
            "cluster__team-peers.yaml",
            "cluster__human-cross-doc.yaml",
            "cluster__manager.yaml",
            "reference__worker-package.yaml",  # declares ops-bot
        ],
        {},
    ),
    "cluster: worker": (["cluster__worker-expose.yaml"], {}),
    "coverage": (
        [
            "coverage__worker-every-field.yaml",
            "coverage__team-every-field.yaml",
            "coverage__human-worker-only.yaml",
            "coverage__manager-every-field.yaml",
        ],
        {},
    ),
}

HEADER_GROUP = re.compile(r"# group: ([a-z]+)")
HEADER_EXPECT = re.compile(r"# expect alone: (clean|[A-Z]\d{3} at line \d+(?:, [A-Z]\d{3} at line \d+)*)(?: \(.+\))?")


def fixtures() -> list[Path]:
    found = sorted(FIXTURES.glob("*.yaml"))
    assert len(found) == FIXTURE_COUNT, f"expected {FIXTURE_COUNT} fixtures in {FIXTURES}, found {len(found)}"
    return found


def header(path: Path) -> tuple[str, list[tuple[str, int]]]:
    """The group and the expected diagnostics alone, from the fixture's first two lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    group = HEADER_GROUP.fullmatch(lines[0])
    expect = HEADER_EXPECT.fullmatch(lines[1])
    assert group and expect, f"{path.name}: the first two lines are not `# group: …` and `# expect alone: …`"
    if expect.group(1) == "clean":
        return group.group(1), []
    pairs = re.findall(r"([A-Z]\d{3}) at line (\d+)", expect.group(1))
    return group.group(1), [(code, int(line)) for code, line in pairs]


def build(tmp_path: Path, names: list[str], extra: dict[str, str] | None = None) -> Path:
    org = tmp_path / "org"
    org.mkdir()
    for name in names:
        shutil.copyfile(FIXTURES / name, org / name)
    for name, text in (extra or {}).items():
        (org / name).write_text(text, encoding="utf-8")
    return org


SERVER_NAME = "matrix.corp.test"


def run(org: Path) -> Validation:
    source = DirectorySource(org)
    # The fixtures' humans carry full Matrix IDs on the server their (imagined) settings name.
    return validate(load(source), escapes=source.escapes, server_name=SERVER_NAME)


def found(diagnostics: list[Diagnostic]) -> Found:
    return sorted((d.code, d.file, d.line) for d in diagnostics)


def explain(diagnostics: list[Diagnostic]) -> str:
    return "\n" + "\n".join(f"{d.location} {d.code} {d.message} ({d.hint})" for d in diagnostics)


def test_every_fixture_is_classified() -> None:
    paths = fixtures()
    assert {p.name for p in paths} == set(ALONE), "classify new fixtures in ALONE"
    assert len(ALONE) == FIXTURE_COUNT
    assert {header(p)[0] for p in paths} == set(BY_GROUP)
    assert {name for names, _ in COMPLETE_ORGS.values() for name in names} <= set(ALONE)


@pytest.mark.parametrize("name", sorted(ALONE))
def test_header_matches_table(name: str) -> None:
    group, expected = header(FIXTURES / name)
    assert name.startswith(group + "__"), f"{name}: group `{group}` is not the file's prefix"
    assert expected == ALONE[name]


@pytest.mark.parametrize("name", sorted(ALONE))
def test_fixture_alone(name: str, tmp_path: Path) -> None:
    fixtures()
    result = run(build(tmp_path, [name]))
    expected = sorted((code, name, line) for code, line in ALONE[name])
    assert found(result.diagnostics) == expected, explain(result.diagnostics)
    assert result.ok == (not expected)


@pytest.mark.parametrize("group", sorted(BY_GROUP))
def test_fixtures_of_one_group(group: str, tmp_path: Path) -> None:
    names = [p.name for p in fixtures() if header(p)[0] == group]
    assert names
    result = run(build(tmp_path, names))
    assert found(result.diagnostics) == sorted(BY_GROUP[group]), explain(result.diagnostics)


@pytest.mark.parametrize("org", sorted(COMPLETE_ORGS))
def test_complete_org_is_clean(org: str, tmp_path: Path) -> None:
    fixtures()
    names, extra = COMPLETE_ORGS[org]
    result = run(build(tmp_path, names, extra))
    assert result.diagnostics == [], explain(result.diagnostics)
    declared = sum(p.read_text(encoding="utf-8").count("\nkind: ") for p in (tmp_path / "org").iterdir())
    assert len(result.org) == declared > 0


def test_multi_document_files_yield_every_resource(tmp_path: Path) -> None:
    result = run(build(tmp_path, ["proposal__team-with-human.yaml", "coverage__team-every-field.yaml"]))
    assert result.diagnostics == [], explain(result.diagnostics)
    assert sorted(result.org.teams) == ["billing-team", "research-team"]
    assert sorted(result.org.humans) == ["ines", "lin", "tomas"]


@pytest.mark.parametrize(("name", "line"), [("intro__worker-quick.yaml", 12), ("proposal__worker-string-mcp.yaml", 16)])
def test_older_schema_mcp_servers_are_located_and_explained(name: str, line: int, tmp_path: Path) -> None:
    (d,) = run(build(tmp_path, [name])).diagnostics
    assert (d.code, d.line, d.path) == ("S303", line, "$.spec.mcpServers[0]")
    assert "must be a mapping, not a string" in d.message
    assert "name" in d.hint and "url" in d.hint


def test_fragment_without_kind(tmp_path: Path) -> None:
    (d,) = run(build(tmp_path, ["cluster__fragment.yaml"])).diagnostics
    assert (d.code, d.line) == ("K201", 3) and "`kind`" in d.message


def test_leader_fields_of_a_worker_are_explained(tmp_path: Path) -> None:
    runtime, skills = run(build(tmp_path, ["rejected__leader-runtime.yaml"])).diagnostics
    assert (runtime.path, skills.path) == ("$.spec.leader.runtime", "$.spec.leader.skills")
    assert "copaw" in runtime.hint and "workers" in skills.hint


def test_groups_come_from_first_lines() -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for path in fixtures():
        groups[header(path)[0]].append(path.name)
    assert {g: len(names) for g, names in groups.items()} == {
        "intro": 1,
        "reference": 5,
        "proposal": 4,
        "import": 1,
        "cluster": 5,
        "coverage": 4,
        "rejected": 5,
    }


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/$defs/"), ref
        node = root["$defs"][ref.removeprefix("#/$defs/")]
    return node


def _schema_fields(node: dict[str, Any], root: dict[str, Any], prefix: str) -> set[str]:
    node = _resolve(node, root)
    fields: set[str] = set()
    for key, sub in node.get("properties", {}).items():
        fields.add(f"{prefix}.{key}")
        fields |= _schema_fields(sub, root, f"{prefix}.{key}")
    if isinstance(node.get("items"), dict):
        fields |= _schema_fields(node["items"], root, prefix + "[]")
    return fields


def _used_fields(value: Any, prefix: str) -> set[str]:
    if isinstance(value, dict):
        used = set()
        for key, sub in value.items():
            used.add(f"{prefix}.{key}")
            used |= _used_fields(sub, f"{prefix}.{key}")
        return used
    if isinstance(value, list):
        return set().union(*(_used_fields(item, prefix + "[]") for item in value))
    return set()


@pytest.mark.parametrize("kind", ["Worker", "Team", "Human", "Manager"])
def test_clean_fixtures_use_every_spec_field(kind: str) -> None:
    """Every field the schema (the upstream CRD fields) accepts under `spec`, at every depth, appears at least
    once in a fixture of a complete org, i.e. one that validates cleanly."""
    schema = json.loads((SCHEMAS / f"{kind.lower()}.schema.json").read_text(encoding="utf-8"))
    accepted = _schema_fields(schema["properties"]["spec"], schema, "spec")
    assert len(accepted) > 5
    clean = sorted({name for names, _ in COMPLETE_ORGS.values() for name in names})
    used: set[str] = set()
    for name in clean:
        for doc in yaml.safe_load_all((FIXTURES / name).read_text(encoding="utf-8")):
            if doc.get("kind") == kind:
                used |= _used_fields(doc["spec"], "spec")
    assert sorted(accepted - used) == []
