"""schemas/plan.schema.json describes Plan.to_dict() exactly, and a plan survives its own JSON form."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from plan_samples import huge, no_changes, sample

from gitops.pipeline import baseline_of, plan, read_org
from gitops.plan import baseline
from gitops.plan.model import Action, Plan
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource

ROOT = Path(__file__).parent.parent.parent
SCHEMA = ROOT / "schemas" / "plan.schema.json"
EXAMPLE = ROOT / "example-org"


@cache
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(data)]


def test_sample_has_every_action() -> None:
    actions = {c.action for c in sample().changes}
    assert actions == set(Action)
    kept = [c for c in sample().changes if c.reason.startswith("no longer declared; kept")]
    assert kept, "the sample keeps one object because prune is disabled"


@pytest.mark.parametrize("build", [sample, no_changes, lambda: huge(20)], ids=["sample", "no-changes", "huge"])
def test_sample_plans_match_the_schema(build: Any) -> None:
    assert errors(build().to_dict()) == []


def test_real_plans_of_the_example_org_match_the_schema(tmp_path: Path) -> None:
    settings = Settings()
    head = read_org(DirectorySource(EXAMPLE))
    assert head.ok
    first = plan(head, settings, baseline.empty(), all_providers=True).to_dict()
    assert first["counts"]["create"] > 0
    assert errors(first) == []

    changed = tmp_path / "org"
    shutil.copytree(EXAMPLE, changed)
    team = changed / "teams" / "frontend-team.yaml"
    team.write_text(team.read_text(encoding="utf-8").replace("peerMentions: true ", "peerMentions: false"), "utf-8")
    (changed / "humans" / "lena.yaml").unlink()
    worker = changed / "workers" / "docs-writer.yaml"
    worker.write_text(worker.read_text(encoding="utf-8").replace("runtime: copaw", "runtime: openclaw"), "utf-8")
    current = baseline_of(head, settings.with_all_providers(), "directory")
    second = plan(read_org(DirectorySource(changed)), settings, current, all_providers=True).to_dict()
    assert {c["action"] for c in second["changes"]} >= {"update", "replace", "delete"}
    lena = next(p for p in second["access"]["principals"] if p["id"].startswith("@lena:"))
    assert lena["rooms"]["lost"]["count"] > 0 and lena["can_address"]["lost"]["count"] > 0
    assert any(r["members"]["removed"] for r in second["access"]["rooms"])
    assert errors(second) == []


def test_the_schema_is_strict(sample_plan: dict[str, Any]) -> None:
    assert errors({**sample_plan, "extra": 1})
    change = sample_plan["changes"][0]
    assert errors({**sample_plan, "changes": [{**change, "colour": "red"}]})
    assert errors({**sample_plan, "changes": [{**change, "action": "noop"}]})
    assert errors({**sample_plan, "counts": {**sample_plan["counts"], "noop": 0}})
    assert errors({**sample_plan, "format_version": 1})
    assert errors({**sample_plan, "access": {"gained": [["@a:x", "@b:x", "dm"]], "lost": []}})  # pairs are format 1
    create = next(c for c in sample_plan["changes"] if c["action"] == "create")
    assert errors({**sample_plan, "changes": [{**create, "before": {"image": "x"}}]})


def test_round_trip_is_equal() -> None:
    full = sample()
    original = replace(full, changes=tuple(c for c in full.changes if c.action is not Action.NOOP))
    assert Plan.from_dict(original.to_dict()) == original
    assert Plan.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_round_trip_keeps_everything_but_the_noops(sample_plan: dict[str, Any]) -> None:
    again = Plan.from_dict(json.loads(json.dumps(sample_plan))).to_dict()
    # No-op changes are not serialised (only their number is); every other field survives as it was.
    assert {k: v for k, v in again.items() if k != "unchanged"} == {
        k: v for k, v in sample_plan.items() if k != "unchanged"
    }
    assert errors(again) == []
