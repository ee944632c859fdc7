"""The CI recipes of docs/ci.md, run as scripts against a local git repository (no network).

The workflow files are read from the documentation itself; their shell steps run as GitHub Actions and GitLab
would run them (bash -e, the steps' env and variables, `if: always()`), after the checkout the services make.
`pip` is a no-op, `hiclaw-gitops` is this checkout, and `gh` / `curl` are stubs that record their arguments
and the body they were given, and answer the listing calls with what the test says exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import clean_env, git

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
MARKER = "<!-- hiclaw-gitops:plan -->"
INVALID_WORKER = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: broken\nspec:\n  model: 42\n"

# What GitHub fills in for the expressions the recipe uses (an unknown expression fails the test).
GITHUB = {
    "github.base_ref": "main",
    "github.token": "ghs_stub",
    "github.event.pull_request.number": "7",
    "github.repository": "acme/org-chart",
}
GITLAB = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
    "CI_API_V4_URL": "https://gitlab.example.com/api/v4",
    "CI_PROJECT_ID": "12",
    "CI_MERGE_REQUEST_IID": "7",
}

STUB = """#!{python}
import json, os, sys
args = sys.argv[1:]
body = None
for i, a in enumerate(args):
    if a.startswith("body=@"):
        body = open(a[len("body=@"):], encoding="utf-8").read()
    if a.startswith("body@"):
        body = open(a[len("body@"):], encoding="utf-8").read()
with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"tool": {tool!r}, "args": args, "body": body}}) + "\\n")
{answer}
"""
GH_ANSWER = """
if "--paginate" in args and os.environ.get("STUB_COMMENT_ID"):
    print(os.environ["STUB_COMMENT_ID"])
"""
CURL_ANSWER = """
if "--request" not in args:
    print(json.dumps([{"id": 3, "body": "LGTM"}] + json.loads(os.environ.get("STUB_NOTES", "[]"))))
"""


def recipes() -> tuple[dict[str, Any], dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2, "docs/ci.md has one GitHub workflow and one .gitlab-ci.yml"
    return yaml.safe_load(blocks[0]), yaml.safe_load(blocks[1])


@dataclass
class Checkout:
    """A pull request's checkout as the CI services make it: full history, the target branch as origin/main."""

    work: Path
    bin: Path
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **more: str) -> dict[str, str]:
        env = clean_env()
        env.update(PATH=f"{self.bin}{os.pathsep}{env['PATH']}", STUB_LOG=str(self.log))
        env.update(self.extra_env)
        env.update(more)
        return env

    def calls(self, tool: str) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]
        return [e for e in entries if e["tool"] == tool]


@pytest.fixture
def checkout(repo: Path, tmp_path: Path) -> Checkout:
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-b", "feature")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    root = Path(__file__).resolve().parents[2]
    tools = {
        "hiclaw-gitops": f"#!/bin/sh\nPYTHONPATH={root} exec {sys.executable} -m gitops \"$@\"\n",
        "pip": "#!/bin/sh\nexit 0\n",
        "gh": STUB.format(python=sys.executable, tool="gh", answer=GH_ANSWER),
        "curl": STUB.format(python=sys.executable, tool="curl", answer=CURL_ANSWER),
    }
    for name, text in tools.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    return Checkout(work, stubs, tmp_path / "calls.jsonl")


def change(c: Checkout, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (c.work / rel).write_text(text)
    git(c.work, "add", "-A")
    git(c.work, "commit", "-q", "-m", "the pull request")


def peer_mentions_off(c: Checkout) -> None:
    team = c.work / "org/teams/frontend-team.yaml"
    change(c, {"org/teams/frontend-team.yaml": team.read_text().replace("peerMentions: true", "peerMentions: false")})


# GitHub Actions -------------------------------------------------------------------------------------------


def _expand(value: str) -> str:
    return re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", lambda m: GITHUB[m.group(1)], value)


@dataclass
class JobRun:
    ok: bool
    outputs: dict[str, subprocess.CompletedProcess[str]]
    skipped: list[str]


def run_github_job(c: Checkout, job: str, summary: Path) -> JobRun:
    workflow, _ = recipes()
    spec = workflow["jobs"][job]
    failed = False
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    skipped: list[str] = []
    for step in spec["steps"]:
        name = step.get("name") or step.get("run") or step.get("uses")
        condition = step.get("if")
        if condition is None:
            run_it = not failed
        elif condition == "always()":
            run_it = True
        elif condition == "github.event.pull_request.head.repo.full_name == github.repository":
            run_it = not failed  # a pull request from the repository itself
        else:
            raise AssertionError(f"the test does not know the condition {condition!r}")
        if not run_it:
            skipped.append(name)
            continue
        if "uses" in step:
            if step["uses"].startswith("github/codeql-action/upload-sarif"):
                sarif = json.loads((c.work / step["with"]["sarif_file"]).read_text())
                assert sarif["version"] == "2.1.0"
                outputs[name] = subprocess.CompletedProcess([], 0, json.dumps(sarif), "")
            continue  # checkout and setup-python: the fixture's checkout and this interpreter
        env = c.env(GITHUB_STEP_SUMMARY=str(summary), GITHUB_ACTIONS="true")
        env.update({k: _expand(str(v)) for k, v in workflow.get("env", {}).items()})
        env.update({k: _expand(str(v)) for k, v in step.get("env", {}).items()})
        done = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-c", step["run"]], cwd=c.work, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        outputs[name] = done
        if done.returncode != 0:
            failed = True
    return JobRun(not failed, outputs, skipped)


def test_github_recipe_on_a_change(checkout: Checkout, tmp_path: Path) -> None:
    peer_mentions_off(checkout)
    summary = tmp_path / "summary.md"
    validate = run_github_job(checkout, "validate", summary)
    assert validate.ok, validate.outputs
    assert json.loads(validate.outputs["Upload to code scanning"].stdout)["runs"][0]["results"] == []

    plan = run_github_job(checkout, "plan", summary)
    assert plan.ok, {k: v.stderr for k, v in plan.outputs.items()}
    plan_md = (checkout.work / "plan.md").read_text()
    assert plan_md.startswith(MARKER + "\n### Plan: 0 to create, 6 to update, 0 to delete.")
    assert "peerMentions true → false" in plan_md
    assert summary.read_text() == plan_md
    assert json.loads((checkout.work / "plan.json").read_text())["compared_against"] == "commit"
    # the first push creates the comment ...
    [listing, post] = checkout.calls("gh")
    assert listing["args"][:3] == ["api", "--paginate", "repos/acme/org-chart/issues/7/comments"]
    assert post["args"][:4] == ["api", "--method", "POST", "repos/acme/org-chart/issues/7/comments"]
    assert post["body"] == plan_md
    # ... the next edits the comment that carries the marker
    checkout.extra_env["STUB_COMMENT_ID"] = "4242"
    assert run_github_job(checkout, "plan", summary).ok
    patch = checkout.calls("gh")[-1]
    assert patch["args"][:4] == ["api", "--method", "PATCH", "repos/acme/org-chart/issues/comments/4242"]
    assert patch["body"] == plan_md
    assert len(checkout.calls("gh")) == 4  # list + create, list + edit: never a second comment


def test_github_recipe_with_no_changes(checkout: Checkout, tmp_path: Path) -> None:
    change(checkout, {"org/README.md": "notes, not an org document\n"})
    plan = run_github_job(checkout, "plan", tmp_path / "summary.md")
    assert plan.ok
    assert (checkout.work / "plan.md").read_text().startswith(MARKER + "\n### No changes.")


def test_github_recipe_on_an_invalid_change(checkout: Checkout, tmp_path: Path) -> None:
    change(checkout, {"org/workers/broken.yaml": INVALID_WORKER})
    summary = tmp_path / "summary.md"
    validate = run_github_job(checkout, "validate", summary)
    assert not validate.ok
    annotations = validate.outputs["Validate (annotations on the changed lines)"]
    assert annotations.returncode == 1
    assert annotations.stdout.startswith("::error file=org/workers/broken.yaml,line=6,col=10,title=S303")
    # the findings still reach code scanning, on the repository path
    results = json.loads(validate.outputs["Upload to code scanning"].stdout)["runs"][0]["results"]
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "org/workers/broken.yaml"
    plan = run_github_job(checkout, "plan", summary)
    assert not plan.ok
    assert plan.skipped == ["Post or update the plan comment"]
    assert checkout.calls("gh") == [] and not summary.exists()


# GitLab CI --------------------------------------------------------------------------------------------------


def run_gitlab_job(c: Checkout, job: str, **variables: str) -> subprocess.CompletedProcess[str]:
    _, pipeline = recipes()
    spec = dict(pipeline[job])
    base = pipeline[spec.pop("extends")] if "extends" in spec else {}
    assert base.get("rules") == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    lines = [*base.get("before_script", []), *spec["script"]]
    env = c.env(**GITLAB)
    env.update({k: str(v) for k, v in pipeline.get("variables", {}).items()})
    env.update({k: str(v) for k, v in spec.get("variables", {}).items()})
    env.update(variables)
    script = "set -eo pipefail\n" + "\n".join(lines)  # what the runner does with a bash job
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=c.work, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_gitlab_recipe_on_a_change(checkout: Checkout) -> None:
    peer_mentions_off(checkout)
    validate = run_gitlab_job(checkout, "hiclaw-validate")
    assert validate.returncode == 0, validate.stderr
    assert json.loads((checkout.work / "gl-code-quality-report.json").read_text()) == []
    plan = run_gitlab_job(checkout, "hiclaw-plan", HICLAW_NOTE_TOKEN="glpat-stub")
    assert plan.returncode == 0, plan.stderr
    plan_md = (checkout.work / "plan.md").read_text()
    assert plan_md.startswith(MARKER + "\n### Plan: 0 to create, 6 to update, 0 to delete.")
    notes = "https://gitlab.example.com/api/v4/projects/12/merge_requests/7/notes"
    [listing, post] = checkout.calls("curl")
    assert listing["args"][-1] == f"{notes}?per_page=100&sort=asc"
    assert "PRIVATE-TOKEN: glpat-stub" in listing["args"]
    assert post["args"][post["args"].index("--request") + 1] == "POST" and post["args"][-1] == notes
    assert post["body"] == plan_md
    # the next pipeline edits the note with the marker (not the other notes of the merge request)
    checkout.extra_env["STUB_NOTES"] = json.dumps([{"id": 55, "body": plan_md}])
    assert run_gitlab_job(checkout, "hiclaw-plan", HICLAW_NOTE_TOKEN="glpat-stub").returncode == 0
    put = checkout.calls("curl")[-1]
    assert put["args"][put["args"].index("--request") + 1] == "PUT" and put["args"][-1] == f"{notes}/55"
    assert put["body"] == plan_md


def test_gitlab_recipe_without_a_token_posts_nothing(checkout: Checkout) -> None:
    peer_mentions_off(checkout)
    plan = run_gitlab_job(checkout, "hiclaw-plan", HICLAW_NOTE_TOKEN="")
    assert plan.returncode == 0, plan.stderr
    assert checkout.calls("curl") == []
    assert (checkout.work / "plan.md").is_file() and (checkout.work / "plan.json").is_file()


def test_gitlab_recipe_on_an_invalid_change(checkout: Checkout) -> None:
    change(checkout, {"org/workers/broken.yaml": INVALID_WORKER})
    validate = run_gitlab_job(checkout, "hiclaw-validate")
    assert validate.returncode == 1
    issues = json.loads((checkout.work / "gl-code-quality-report.json").read_text())
    assert issues[0]["location"] == {"path": "org/workers/broken.yaml", "lines": {"begin": 6}}
    assert "org/workers/broken.yaml:6:10: error[S303]" in validate.stdout
    plan = run_gitlab_job(checkout, "hiclaw-plan", HICLAW_NOTE_TOKEN="glpat-stub")
    assert plan.returncode == 1
    assert checkout.calls("curl") == []
