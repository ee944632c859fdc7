"""example-org provisioned onto a real SeaweedFS through the storage backend (aws-iam identities), then read back
with the admin's and each agent's own generated credentials: files as SPEC §3.4 lists them, least privilege as a
matrix over all agents, an archived area for a deleted agent whose keys stop working, and a second pass that writes
nothing. No key is ever printed: assertions compare codes, counts and booleans."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from s3site import DENIED, Site, attempt, put, read

from deploy.seaweedfs import SeaweedFS

TEAMS = {  # team prefix -> members, read from the org's YAML (not from the compiler)
    f"teams/{doc['spec'].get('teamName') or doc['metadata']['name']}/":
        {doc["spec"]["leader"]["name"], *(w["name"] for w in doc["spec"].get("workers") or [])}
    for doc in (yaml.safe_load(p.read_text()) for p in sorted((Path(__file__).parents[2] / "example-org/teams")
                                                               .glob("*.yaml")))
}


@pytest.fixture(scope="module")
def site(seaweed: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(seaweed, tmp_path_factory.mktemp("site"))
    s.seed_matrix_tokens(AGENTS)
    s.reconcile()
    try:
        yield s
    finally:
        s.close()


ORG = Path(__file__).parents[2] / "example-org"
AGENTS = sorted({str(doc["metadata"]["name"]) for path in [ORG / "manager.yaml", *ORG.glob("workers/*.yaml")]
                 for doc in yaml.safe_load_all(path.read_text()) if doc}
                | {m for members in TEAMS.values() for m in members} | {"manager"})


def manager_name() -> str:
    doc = yaml.safe_load((Path(__file__).parents[2] / "example-org/manager.yaml").read_text())
    return str(doc["metadata"]["name"])


def test_every_agent_has_its_files_and_an_identity(site: Site) -> None:
    admin = site.admin()
    keys = {o.object_name for o in admin.list_objects(site.storage.bucket, recursive=True)}
    users = {n.split("/")[1] for n in site.secrets.names() if n.startswith("storage/") and n.endswith("/secret-key")}
    assert len(users) == 12
    for rt in users:
        assert f"agents/{rt}/openclaw.json" in keys, rt
        config = json.loads(read(admin, site.storage.bucket, f"agents/{rt}/openclaw.json"))
        has_model = bool(config["models"]["providers"]["hiclaw-gateway"]["models"][0]["id"])  # the file holds keys
        assert has_model, rt
        token = config["channels"]["matrix"]["accessToken"]
        resolved = token.startswith("syt_") and "secret://" not in json.dumps(config)  # a bool: never the token
        assert resolved, rt
    assert {"shared/knowledge/.keep", "shared/tasks/.keep"} <= keys
    assert {k for k in keys if k.startswith("teams/")} == {f"{t}shared/.keep" for t in TEAMS}
    assert any(k.endswith("/SOUL.md") for k in keys) and any(k.endswith("/skills.json") for k in keys)


def test_least_privilege_with_each_agents_own_credentials(site: Site) -> None:
    bucket = site.storage.bucket
    users = sorted(n.split("/")[1] for n in site.secrets.names()
                   if n.startswith("storage/") and n.endswith("/secret-key"))
    time.sleep(0.1)  # IAM changes apply from the next request on
    wrong: list[tuple[str, str, str, str]] = []
    checks = 0

    def expect(rt: str, op: str, target: str, allowed: bool, outcome: str) -> None:
        nonlocal checks
        checks += 1
        if (outcome == "ok") != allowed or (not allowed and outcome not in DENIED):
            wrong.append((rt, op, target, outcome))

    for rt in users:
        me = site.agent(rt)
        mine = [f"agents/{rt}/", "shared/"] + [t for t, members in TEAMS.items() if rt in members]
        if rt == "manager" or rt == manager_name():
            mine.append("manager/")
        for prefix in mine:
            key = f"{prefix}probe-{rt}.txt"
            expect(rt, "put", prefix, True, attempt(put, me, bucket, key))
            expect(rt, "get", prefix, True, attempt(read, me, bucket, key))
            expect(rt, "list", prefix, True, attempt(me.list_objects, bucket, prefix=prefix))
            expect(rt, "delete", prefix, True, attempt(me.remove_object, bucket, key))
        others = [f"agents/{o}/" for o in users if o != rt] + [t for t in TEAMS if t not in mine]
        for prefix in others:
            victim = f"{prefix}openclaw.json" if prefix.startswith("agents/") else f"{prefix}shared/.keep"
            expect(rt, "get", prefix, False, attempt(read, me, bucket, victim))
            expect(rt, "put", prefix, False, attempt(put, me, bucket, f"{prefix}intruder.txt"))
            expect(rt, "delete", prefix, False, attempt(me.remove_object, bucket, victim))
            expect(rt, "list", prefix, False, attempt(me.list_objects, bucket, prefix=prefix))
        # the bare prefix of a longer name, the whole bucket and the agents/ folder are not listable either
        for prefix in (f"agents/{rt}", "agents/", ""):
            expect(rt, "list", prefix or "(bucket)", False,
                   attempt(me.list_objects, bucket, prefix=prefix, recursive=True))
    assert checks > 12 * 11 * 4
    assert wrong == []
    # nothing an agent was denied left a trace
    admin = site.admin()
    assert not [o for o in admin.list_objects(bucket, recursive=True) if o.object_name.endswith("intruder.txt")]


def test_a_second_pass_writes_nothing(site: Site) -> None:
    admin = site.admin()
    before = {o.object_name: o.etag for o in admin.list_objects(site.storage.bucket, recursive=True)}
    writes = site.backend.writes + site.backend.identity_writes
    result = site.reconcile()
    assert site.backend.writes + site.backend.identity_writes == writes  # not one S3 or IAM write
    assert result.plan is not None
    assert [c.key for c in result.plan.changes if c.action != "noop"] == []
    after = {o.object_name: o.etag for o in admin.list_objects(site.storage.bucket, recursive=True)}
    assert after == before


def test_a_no_op_pass_lists_and_asks_no_file_again(site: Site) -> None:
    """SPEC §10: a no-op pass makes one list call per type, never one per object. Listings carry ETags, not our
    labels: a file whose ETag did not move since a HEAD found it is not asked again (IAM users still are)."""
    site.reconcile()
    before = site.backend.requests
    result = site.reconcile()
    assert result.plan is not None and [c.key for c in result.plan.changes if c.action != "noop"] == []
    assert site.backend.requests - before == 2  # HeadBucket, ListObjectsV2: no HeadObject for 43 files


def test_a_rotated_credential_rewrites_exactly_the_files_carrying_it(site: Site) -> None:
    admin, bucket = site.admin(), site.storage.bucket
    before = {o.object_name: o.etag for o in admin.list_objects(bucket, recursive=True)}
    site.secrets.put("matrix/fe-dev/token", "syt_rotated_" + "0" * 8)
    result = site.reconcile()
    assert result.plan is not None
    assert [c.key for c in result.plan.changes if c.action != "noop"] == ["storage/object/agents/fe-dev/openclaw.json"]
    after = {o.object_name: o.etag for o in admin.list_objects(bucket, recursive=True)}
    assert {k for k in after if after[k] != before.get(k)} == {"agents/fe-dev/openclaw.json"}
    config = json.loads(read(admin, bucket, "agents/fe-dev/openclaw.json"))
    rotated = config["channels"]["matrix"]["accessToken"].startswith("syt_rotated_")
    assert rotated


def test_files_an_agent_writes_are_never_touched_and_a_foreign_key_is_refused(site: Site) -> None:
    bucket, admin = site.storage.bucket, site.admin()
    me = site.agent("fe-qa")
    assert attempt(put, me, bucket, "agents/fe-qa/memory/today.md", b"mine") == "ok"
    put(admin, bucket, "shared/tasks/.keep", b"someone else's")  # drops our label: no longer ours
    result = site.reconcile(check=False)
    failed = {s.key: s.message for s in result.run.failed} if result.run else {}
    assert list(failed) == ["storage/object/shared/tasks/.keep"]
    assert "was not written by" in failed["storage/object/shared/tasks/.keep"]
    assert read(admin, bucket, "shared/tasks/.keep") == b"someone else's"
    assert read(admin, bucket, "agents/fe-qa/memory/today.md") == b"mine"
    admin.remove_object(bucket, "shared/tasks/.keep")  # gone: the next pass writes ours again
    site.reconcile()


def test_no_generated_key_in_any_file_or_state(site: Site) -> None:
    values = [v for v in site.secret_values() if len(v) >= 16]
    assert values
    state_text = "".join(p.read_text(errors="replace") for p in Path(site.settings.state_dir).rglob("*")
                         if p.is_file() and "secret" not in p.name)
    storage_keys = [v for n in site.secrets.names() if n.startswith("storage/") and (v := site.secrets.peek(n))]
    assert sum(v in state_text for v in storage_keys) == 0


def test_a_deleted_agent_is_archived_and_its_keys_stop_working(site: Site) -> None:
    bucket, rt = site.storage.bucket, "docs-writer"
    me = site.agent(rt)
    assert attempt(lambda: put(me, bucket, f"agents/{rt}/notes/own.md", b"written by the agent")) == "ok"
    (site.org / "workers/docs-writer.yaml").unlink()
    for human in ("sam", "chen"):  # their grants name the worker
        path = site.org / f"humans/{human}.yaml"
        path.write_text(path.read_text().replace("accessibleWorkers: [docs-writer]", "accessibleWorkers: []"))
    site.reconcile()
    admin = site.admin()
    keys = [o.object_name for o in admin.list_objects(bucket, recursive=True)]
    assert not [k for k in keys if k.startswith(f"agents/{rt}/")]
    archived = [k for k in keys if k.startswith("archive/") and f"/agents/{rt}/" in k]
    assert any(k.endswith(f"agents/{rt}/openclaw.json") for k in archived)
    own = [k for k in archived if k.endswith("notes/own.md")]
    assert len(own) == 1 and read(admin, bucket, own[0]) == b"written by the agent"
    time.sleep(0.1)
    assert attempt(lambda: put(me, bucket, f"agents/{rt}/again.txt")) in DENIED
    assert attempt(lambda: read(me, bucket, "shared/knowledge/.keep")) in DENIED
    assert site.reconcile().plan is not None


def test_purge_storage_removes_an_area_without_archive(seaweed: SeaweedFS, tmp_path: Path) -> None:
    s = Site(seaweed, tmp_path, purge=True)
    try:
        s.seed_matrix_tokens_of_org()
        s.reconcile()
        for human in ("sam", "chen"):
            path = s.org / f"humans/{human}.yaml"
            path.write_text(path.read_text().replace("accessibleWorkers: [docs-writer]", "accessibleWorkers: []"))
        (s.org / "workers/docs-writer.yaml").unlink()
        s.reconcile()
        keys = [o.object_name for o in s.admin().list_objects(s.storage.bucket, recursive=True)]
        assert not [k for k in keys if "agents/docs-writer/" in k]
        assert not [k for k in keys if k.startswith("archive/")]
    finally:
        s.close()
