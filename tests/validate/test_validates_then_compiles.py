"""Every org that validates compiles: random small orgs, written as YAML files, whose validation reports no
error must compile, plan and draw without raising.

Names come from a small alphabet so that collisions — of names, runtime names, team names, Matrix IDs, ports —
are frequent; each resource is written to its own file so duplicates reach the validator as they would from a
repository.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gitops import pipeline
from gitops.cli import main
from gitops.plan import baseline
from gitops.settings.model import DEFAULT_SERVER_NAME, Settings, StorageSettings
from gitops.source.files import DirectorySource

D = DEFAULT_SERVER_NAME
AGENT_NAMES = ("a", "b", "c", "dev", "qa", "ops", "pam", "manager")
TEAM_NAMES = ("t", "u", "a")
HUMAN_NAMES = ("pam", "sam", "lee", "a", "dev")
AGENTS, TEAMS, HUMANS = (st.sampled_from(n) for n in (AGENT_NAMES, TEAM_NAMES, HUMAN_NAMES))
MXIDS = st.sampled_from([f"@pam:{D}", "@pam:evil.example.org", f"@a:{D}", f"@sam:{D}", "@sso:sso.example.com"])
PORTS = st.sampled_from([80, 8080, 9000])
MATRIX_USER_ID = "gitops.hiclaw.io/matrix-user-id"
OFFLINE = Settings().with_all_providers()
ADMIN_API = replace(OFFLINE, storage=StorageSettings(admin_api=True))


def _rarely(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 3)) == 0


def _often(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 3)) != 0


def _mostly(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 7)) != 0


def _pick(draw: st.DrawFn, declared: list[str], anything: st.SearchStrategy[str]) -> str:
    """Mostly a name that is declared, sometimes any name of the alphabet."""
    return draw(st.sampled_from(declared)) if declared and _mostly(draw) else draw(anything)


def _fresh(draw: st.DrawFn, used: list[str], alphabet: tuple[str, ...]) -> str:
    """Mostly a name not used yet, sometimes any name of the alphabet (a collision, often)."""
    name = draw(st.sampled_from(alphabet))
    unused = [n for n in alphabet if n not in used]
    if name in used and unused and _mostly(draw):
        name = draw(st.sampled_from(unused))
    used.append(name)
    return name


def _policy(draw: st.DrawFn) -> dict[str, list[str]]:
    entries = st.lists(st.one_of(AGENTS, HUMANS, MXIDS, st.just("admin")), max_size=2)
    return draw(
        st.fixed_dictionaries(
            {}, optional={k: entries for k in ("groupAllowExtra", "groupDenyExtra", "dmAllowExtra", "dmDenyExtra")}
        )
    )


def _agent(draw: st.DrawFn, name: str, used: list[str], expose: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name} if name else {}
    if _rarely(draw):
        spec["workerName"] = _fresh(draw, used, AGENT_NAMES)
    if _rarely(draw):
        spec["channelPolicy"] = _policy(draw)
    if expose and _rarely(draw):
        ports = draw(st.lists(PORTS, min_size=1, max_size=3, unique=not _rarely(draw)))
        spec["expose"] = [{"port": p} for p in ports]
    return spec


def _human_ref(draw: st.DrawFn, humans: dict[str, str]) -> dict[str, Any]:
    """A Team's admin or human member: mostly a declared Human; its matrixUserId right, wrong, or absent."""
    name = _pick(draw, list(humans), HUMANS)
    ref: dict[str, Any] = {"name": name}
    if _rarely(draw):
        ref["matrixUserId"] = humans[name] if name in humans and _often(draw) else draw(MXIDS)
    return ref


def _human(draw: st.DrawFn, name: str, agents: list[str], workers: list[str], teams: list[str]) -> dict[str, Any]:
    level = draw(st.integers(1, 3))
    spec: dict[str, Any] = {"displayName": name.title(), "permissionLevel": level}
    if _rarely(draw):
        spec["username"] = _fresh(draw, agents, HUMAN_NAMES)
    if level > 1 and draw(st.booleans()):
        spec["accessibleWorkers"] = [_pick(draw, workers, AGENTS) for _ in range(draw(st.integers(1, 2)))]
    if level == 2 and draw(st.booleans()):
        spec["accessibleTeams"] = [_pick(draw, teams, TEAMS) for _ in range(draw(st.integers(1, 2)))]
    mxid = draw(MXIDS) if _rarely(draw) else None
    return _doc("Human", name, spec, {MATRIX_USER_ID: mxid} if mxid else None)


def _doc(kind: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "hiclaw.io/v1beta1", "kind": kind, "metadata": metadata, "spec": spec}


def _identity(doc: dict[str, Any]) -> str:
    annotated = (doc["metadata"].get("annotations") or {}).get(MATRIX_USER_ID)
    return annotated or f"@{doc['spec'].get('username') or doc['metadata']['name']}:{D}"


@st.composite
def orgs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Documents of a small org: 0-1 Manager, 0-3 Workers, 0-2 Teams, 0-3 Humans. Names are mostly fresh
    and sometimes reused, so that most orgs validate and many collide."""
    docs: list[dict[str, Any]] = []
    if draw(st.booleans()):
        docs.append(_doc("Manager", draw(st.sampled_from(["default", "a"])), {"model": "qwen3.6-plus"}))
    agents: list[str] = ["manager"]  # runtime names and Matrix localparts; `manager` is reserved
    workers = [_fresh(draw, agents, AGENT_NAMES) for _ in range(draw(st.integers(0, 3)))]
    teams: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        _fresh(draw, teams, TEAM_NAMES)
    humans: dict[str, str] = {}  # Human name -> its Matrix ID
    for _ in range(draw(st.integers(0, 3))):
        name = _fresh(draw, agents, HUMAN_NAMES)  # a Human's localpart may clash with an agent's
        if name in humans and not _rarely(draw):
            continue
        docs.append(_human(draw, name, agents, workers, teams))
        humans.setdefault(name, _identity(docs[-1]))
    for name in workers:
        docs.append(_doc("Worker", name, {"model": "qwen3.6-plus", **_agent(draw, "", agents, expose=True)}))
    for name in teams:
        spec: dict[str, Any] = {"leader": _agent(draw, _fresh(draw, agents, AGENT_NAMES), agents, expose=False)}
        crew = range(draw(st.integers(0, 2)))
        spec["workers"] = [_agent(draw, _fresh(draw, agents, AGENT_NAMES), agents, expose=True) for _ in crew]
        if _rarely(draw):
            spec["teamName"] = draw(TEAMS)
        if draw(st.booleans()) if humans else _rarely(draw):
            admin = _human_ref(draw, humans)
            if _rarely(draw):
                del admin["name"]
            spec["admin"] = admin
        members = [_human_ref(draw, humans) for _ in range(draw(st.integers(0, 2 if humans else 1)))]
        if members:
            spec["humanMembers"] = members
        if _rarely(draw):
            spec["channelPolicy"] = _policy(draw)
        spec["peerMentions"] = draw(st.booleans())
        docs.append(_doc("Team", name, spec))
    return docs


def _write(root: Path, docs: list[dict[str, Any]]) -> None:
    for i, doc in enumerate(docs):
        (root / f"{i:02d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")


def _graph(root: Path) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        return main(["graph", str(root), "--color", "never"])


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(docs=orgs(), config=st.sampled_from([Settings(), OFFLINE, ADMIN_API]))
def test_an_org_that_validates_compiles_plans_and_draws(docs: list[dict[str, Any]], config: Settings) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root, docs)
        read = pipeline.read_org(DirectorySource(root))
        event("valid" if read.ok else "invalid")
        assert _graph(root) == (0 if read.ok else 1)  # never raises; draws exactly the orgs that validate
        if not read.ok:
            return
        pipeline.desired_state(read, config)
        pipeline.plan(read, config, baseline.empty())
        pipeline.plan(read, config, baseline.empty(), all_providers=True)
