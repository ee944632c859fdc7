"""Upstream documentation examples: the valid ones validate cleanly, the others fail precisely.

The corpus (`shared/reference/upstream-examples/`, one YAML block of the upstream HiClaw docs per file, the
first line naming its source) was written by no one here. Each file is checked alone; the files of one
source document are checked together; and complete orgs are assembled from them (a Human needs the Teams and
Workers it names), which must validate without a single diagnostic.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from gitops.diagnostics import Diagnostic
from gitops.source.files import DirectorySource
from gitops.source.load import load
from gitops.validate.check import Validation, validate

UPSTREAM = Path(__file__).resolve().parents[2] / "shared/reference/upstream-examples"

BLOG_001 = "blog__hiclaw-k8s-native-multi-agent-collaboration__001.yaml"
DRM = "docs__declarative-resource-management__{:03d}.yaml"
TWP = "docs__design__team-worker-proposal__{:03d}.yaml"
IMPORT_011 = "docs__import-worker__011.yaml"
K8S = "docs__k8s-native-agent-orch__{:03d}.yaml"

Found = list[tuple[str, str, int]]  # (code, file, line)

# Each file alone: exactly these diagnostics (code, line). Humans alone name Teams and Workers that are
# not there, which is itself a precise result worth pinning.
ALONE: dict[str, list[tuple[str, int]]] = {
    BLOG_001: [("S303", 10)],  # older schema: `mcpServers: [github]`
    DRM.format(2): [],
    DRM.format(3): [],
    DRM.format(4): [],
    DRM.format(5): [],
    DRM.format(6): [("R405", 10)],  # accessibleTeams: [alpha-team]
    TWP.format(7): [("S303", 14)],  # older schema: `- github`
    TWP.format(8): [],
    TWP.format(9): [("R405", 10), ("R406", 11)],  # alpha-team, standalone-worker-1
    TWP.format(10): [],
    IMPORT_011: [],
    K8S.format(12): [("K201", 2)],  # a fragment: apiVersion only
    K8S.format(13): [],
    K8S.format(14): [],
    K8S.format(15): [("R405", 10), ("R406", 11)],  # frontend-team, devops-alice
    K8S.format(16): [],
}

# All examples of one source document together. A document's examples are alternatives, not one org,
# so some collide; the collisions are pinned exactly.
BY_DOCUMENT: dict[str, Found] = {
    "blog/hiclaw-k8s-native-multi-agent-collaboration.md": [("S303", BLOG_001, 10)],
    "docs/declarative-resource-management.md": [],
    "docs/design/team-worker-proposal.md": [
        ("S303", TWP.format(7), 14),
        ("R406", TWP.format(9), 11),  # standalone-worker-1 is a placeholder name
        ("R401", TWP.format(10), 5),  # Team alpha-team again (first in 008)
        ("R401", TWP.format(10), 17),  # Human john again (first in 009)
    ],
    "docs/import-worker.md": [],
    "docs/k8s-native-agent-orch.md": [
        ("K201", K8S.format(12), 2),
        ("R403", K8S.format(14), 22),  # team member `alice` has the name of the standalone Worker alice (013)
        ("R406", K8S.format(15), 11),  # devops-alice is declared in another document
    ],
}

# Complete orgs built from the examples, plus what they reference: each validates cleanly.
STANDALONE_WORKER_1 = """\
apiVersion: hiclaw.io/v1beta1
kind: Worker
metadata:
  name: standalone-worker-1
spec:
  model: claude-sonnet-4-6
"""
COMPLETE_ORGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "declarative-resource-management": ([DRM.format(n) for n in (2, 3, 4, 5, 6)], {}),
    "team-worker-proposal: team and human": (
        [TWP.format(8), TWP.format(9)],
        {"standalone-worker-1.yaml": STANDALONE_WORKER_1},
    ),
    "team-worker-proposal: one file": ([TWP.format(10)], {}),
    "import-worker": ([IMPORT_011], {}),
    "k8s-native-agent-orch: team, human, manager": (
        [K8S.format(14), K8S.format(15), K8S.format(16), DRM.format(3)],  # 003 declares devops-alice
        {},
    ),
    "k8s-native-agent-orch: worker": ([K8S.format(13)], {}),
}


def corpus() -> list[Path]:
    if not UPSTREAM.is_dir():
        pytest.fail(f"the upstream examples are missing: expected them at {UPSTREAM}")
    return sorted(UPSTREAM.glob("*.yaml"))


def source_document(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = re.fullmatch(r"# from (\S+) line \d+", first)
    assert m, f"{path.name}: the first line does not name the source: {first!r}"
    return m.group(1)


def build(tmp_path: Path, names: list[str], extra: dict[str, str] | None = None) -> Path:
    org = tmp_path / "org"
    org.mkdir()
    for name in names:
        shutil.copyfile(UPSTREAM / name, org / name)
    for name, text in (extra or {}).items():
        (org / name).write_text(text, encoding="utf-8")
    return org


def run(org: Path) -> Validation:
    source = DirectorySource(org)
    return validate(load(source), escapes=source.escapes)


def found(diagnostics: list[Diagnostic]) -> Found:
    return sorted((d.code, d.file, d.line) for d in diagnostics)


def explain(diagnostics: list[Diagnostic]) -> str:
    return "\n" + "\n".join(f"{d.location} {d.code} {d.message} ({d.hint})" for d in diagnostics)


def test_every_example_is_classified() -> None:
    names = {p.name for p in corpus()}
    assert names == set(ALONE), "classify new upstream examples in ALONE"
    assert {source_document(p) for p in corpus()} == set(BY_DOCUMENT)


@pytest.mark.parametrize("name", sorted(ALONE))
def test_example_alone(name: str, tmp_path: Path) -> None:
    corpus()
    result = run(build(tmp_path, [name]))
    expected = sorted((code, name, line) for code, line in ALONE[name])
    assert found(result.diagnostics) == expected, explain(result.diagnostics)
    assert result.ok == (not expected)


@pytest.mark.parametrize("document", sorted(BY_DOCUMENT))
def test_examples_of_one_document(document: str, tmp_path: Path) -> None:
    names = [p.name for p in corpus() if source_document(p) == document]
    result = run(build(tmp_path, names))
    assert found(result.diagnostics) == sorted(BY_DOCUMENT[document]), explain(result.diagnostics)


@pytest.mark.parametrize("org", sorted(COMPLETE_ORGS))
def test_complete_org_is_clean(org: str, tmp_path: Path) -> None:
    corpus()
    names, extra = COMPLETE_ORGS[org]
    result = run(build(tmp_path, names, extra))
    assert result.diagnostics == [], explain(result.diagnostics)
    assert len(result.org) == sum(p.read_text(encoding="utf-8").count("\nkind: ") for p in (tmp_path / "org").iterdir())


@pytest.mark.parametrize(("name", "line"), [(BLOG_001, 10), (TWP.format(7), 14)])
def test_older_schema_mcp_servers_are_located_and_explained(name: str, line: int, tmp_path: Path) -> None:
    (d,) = run(build(tmp_path, [name])).diagnostics
    assert (d.code, d.line, d.path) == ("S303", line, "$.spec.mcpServers[0]")
    assert "must be a mapping, not a string" in d.message
    assert "name" in d.hint and "url" in d.hint


def test_fragment_without_kind(tmp_path: Path) -> None:
    (d,) = run(build(tmp_path, [K8S.format(12)])).diagnostics
    assert (d.code, d.line) == ("K201", 2) and "`kind`" in d.message


def test_document_groups_come_from_first_lines() -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for path in corpus():
        groups[source_document(path)].append(path.name)
    assert groups["docs/declarative-resource-management.md"] == [DRM.format(n) for n in range(2, 7)]
    assert groups["docs/k8s-native-agent-orch.md"] == [K8S.format(n) for n in range(12, 17)]
