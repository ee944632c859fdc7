"""Org rules that keep every derived identity distinct, so that an org that validates also compiles.

Each case once validated cleanly and then crashed the compiler ("compiler produced <key> twice"), or let a
wrong Matrix ID through. The rule now reports it; the corrected org compiles and plans.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gitops import pipeline
from gitops.cli import main
from gitops.diagnostics import Diagnostic, Severity
from gitops.plan import baseline
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource
from gitops.source.load import load
from gitops.validate.check import validate

D = "matrix-local.hiclaw.io:8080"
ALL = Settings().with_all_providers()


def org(tmp_path: Path, *documents: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(documents):
        (tmp_path / f"{i}.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return tmp_path


def worker(name: str, extra: str = "") -> str:
    return f"""
        apiVersion: hiclaw.io/v1beta1
        kind: Worker
        metadata:
          name: {name}
        spec:
          model: qwen3.6-plus
        {extra}"""


def team(name: str, body: str) -> str:
    return f"""
        apiVersion: hiclaw.io/v1beta1
        kind: Team
        metadata:
          name: {name}
        spec:
        {body}"""


def human(name: str, spec: str = "", annotation: str = "") -> str:
    marks = ""
    if annotation:
        marks = f'\n          annotations:\n            gitops.hiclaw.io/matrix-user-id: "{annotation}"'
    return f"""
        apiVersion: hiclaw.io/v1beta1
        kind: Human
        metadata:
          name: {name}{marks}
        spec:
          displayName: {name.title()}
          permissionLevel: 2
        {spec}"""


def errors(repo: Path, server_name: str | None = None) -> list[Diagnostic]:
    source = DirectorySource(repo)
    loaded = load(source)
    result = validate(loaded) if server_name is None else validate(loaded, server_name=server_name)
    return [d for d in result.diagnostics if d.severity is Severity.ERROR]


def compiles(repo: Path, settings: Settings = ALL) -> None:
    read = pipeline.read_org(DirectorySource(repo))
    assert read.ok, [f"{d.code} {d.message}" for d in read.validation.diagnostics]
    pipeline.plan(read, settings, baseline.empty(), all_providers=True)


# --------------------------------------------------------------------------- R418: member names across teams


def two_teams(second_worker: str) -> tuple[str, str]:
    first = team("alpha", "  leader: {name: alpha-lead}\n          workers: [{name: dev, workerName: alpha-dev}]")
    second = team("beta", f"  leader: {{name: beta-lead}}\n          workers: [{second_worker}]")
    return first, second


def test_one_member_name_in_two_teams_is_an_error_at_the_second(tmp_path: Path) -> None:
    repo = org(tmp_path, *two_teams("{name: dev, workerName: beta-dev}"))
    (d,) = errors(repo)
    assert (d.code, d.file, d.path) == ("R418", "1.yaml", "$.spec.workers[0].name")
    assert "hiclaw-worker-dev" in d.hint and "0.yaml:" in d.message


def test_distinct_member_names_compile(tmp_path: Path) -> None:
    compiles(org(tmp_path, *two_teams("{name: beta-dev}")))


def test_one_name_and_one_runtime_name_in_two_teams_is_reported_once(tmp_path: Path) -> None:
    repo = org(tmp_path, *two_teams("{name: dev, workerName: alpha-dev}"))
    assert [d.code for d in errors(repo)] == ["R418"]


def test_a_member_named_manager_is_still_reserved_beside_a_manager_of_that_name(tmp_path: Path) -> None:
    manager = """
        apiVersion: hiclaw.io/v1beta1
        kind: Manager
        metadata:
          name: manager
        spec:
          model: qwen3.6-plus
        """
    repo = org(tmp_path, manager, team("alpha", "  leader: {name: manager}"))
    assert [d.code for d in errors(repo)] == ["R402"]


# --------------------------------------------------------------------------- R419: team names


def test_two_teams_with_one_team_name_is_an_error(tmp_path: Path) -> None:
    repo = org(
        tmp_path,
        team("alpha", "  leader: {name: alpha-lead}"),
        team("beta", "  teamName: alpha\n          leader: {name: beta-lead}"),
    )
    (d,) = errors(repo)
    assert (d.code, d.file, d.path) == ("R419", "1.yaml", "$.spec.teamName")
    assert "#hiclaw-team-alpha" in d.hint


def test_distinct_team_names_compile(tmp_path: Path) -> None:
    compiles(
        org(
            tmp_path,
            team("alpha", "  leader: {name: alpha-lead}"),
            team("beta", "  teamName: platform\n          leader: {name: beta-lead}"),
        )
    )


# --------------------------------------------------------------------------- R420: exposed ports


def test_a_port_exposed_twice_is_an_error_whatever_the_protocol(tmp_path: Path) -> None:
    repo = org(tmp_path, worker("alice", "  expose: [{port: 8080}, {port: 8080, protocol: grpc}]"))
    (d,) = errors(repo)
    assert (d.code, d.path) == ("R420", "$.spec.expose[1].port")
    assert "expose[0]" in d.message


def test_a_team_worker_port_exposed_twice_is_an_error(tmp_path: Path) -> None:
    body = "  leader: {name: lead}\n          workers: [{name: dev, expose: [{port: 80}, {port: 80}]}]"
    (d,) = errors(org(tmp_path, team("alpha", body)))
    assert (d.code, d.path) == ("R420", "$.spec.workers[0].expose[1].port")


@pytest.mark.parametrize("port", [0, -80, 65536])
def test_a_port_outside_the_tcp_range_is_an_error(tmp_path: Path, port: int) -> None:
    (d,) = errors(org(tmp_path, worker("alice", f"  expose: [{{port: {port}}}]")))
    assert d.code == "R420" and "1 to 65535" in d.hint


def test_distinct_ports_compile(tmp_path: Path) -> None:
    compiles(org(tmp_path, worker("alice", "  expose: [{port: 8080}, {port: 9090, protocol: grpc}]")))


# --------------------------------------------------------------------------- R415: the admin's full Matrix ID


def admin_team(matrix_user_id: str) -> str:
    return team("alpha", f'  admin: {{name: pam, matrixUserId: "{matrix_user_id}"}}\n          leader: {{name: lead}}')


def test_admin_id_on_another_server_is_not_the_human(tmp_path: Path) -> None:
    repo = org(tmp_path, human("pam"), admin_team("@pam:evil.example.org"))
    (d,) = errors(repo)
    assert (d.code, d.path) == ("R415", "$.spec.admin.matrixUserId")
    assert f"@pam:{D}" in d.hint


def test_admin_id_on_this_server_is_the_human(tmp_path: Path) -> None:
    compiles(org(tmp_path, human("pam"), admin_team(f"@pam:{D}")))


def test_admin_id_is_compared_with_the_username(tmp_path: Path) -> None:
    repo = org(tmp_path, human("pam", "  username: pbeesly"), admin_team(f"@pam:{D}"))
    (d,) = errors(repo)
    assert d.code == "R415" and f"@pbeesly:{D}" in d.message


def test_admin_id_of_an_annotated_human_is_its_annotation(tmp_path: Path) -> None:
    repo = org(tmp_path, human("pam", annotation="@pam:sso.example.com"), admin_team(f"@pam:{D}"))
    assert [d.code for d in errors(repo)] == ["R415"]
    compiles(org(tmp_path / "ok", human("pam", annotation="@pam:sso.example.com"), admin_team("@pam:sso.example.com")))


def test_admin_id_without_a_name_must_be_a_matrix_id(tmp_path: Path) -> None:
    repo = org(tmp_path, team("alpha", '  admin: {matrixUserId: "pam"}\n          leader: {name: lead}'))
    (d,) = errors(repo)
    assert d.code == "R415" and "not a Matrix user ID" in d.message


def test_the_server_name_is_passed_in(tmp_path: Path) -> None:
    repo = org(tmp_path, human("pam"), admin_team("@pam:chat.acme.io"))
    assert [d.code for d in errors(repo)] == ["R415"]  # the default server name
    assert errors(repo, server_name="chat.acme.io") == []
    assert [d.code for d in errors(repo, server_name="chat.example.org")] == ["R415"]


def test_validate_keeps_its_positional_signature(tmp_path: Path) -> None:
    source = DirectorySource(org(tmp_path, human("pam"), admin_team(f"@pam:{D}")))
    assert validate(load(source), False, source.escapes, None).ok


# --------------------------------------------------------------------------- R421: humanMembers' Matrix IDs


def member_team(matrix_user_id: str) -> str:
    members = f'[{{name: sam, matrixUserId: "{matrix_user_id}"}}]'
    return team("alpha", f"  leader: {{name: lead}}\n          humanMembers: {members}")


def test_member_id_that_is_not_the_humans_is_an_error(tmp_path: Path) -> None:
    (d,) = errors(org(tmp_path, human("sam"), member_team("@sam:evil.example.org")))
    assert (d.code, d.path) == ("R421", "$.spec.humanMembers[0].matrixUserId")
    assert f"@sam:{D}" in d.hint


def test_member_id_that_is_not_a_matrix_id_is_an_error(tmp_path: Path) -> None:
    (d,) = errors(org(tmp_path, human("sam"), member_team("sam")))
    assert d.code == "R421" and "not a Matrix user ID" in d.message


def test_member_id_of_an_annotated_human_is_placed_in_the_team_room(tmp_path: Path) -> None:
    sso = "@sam.s:sso.example.com"
    repo = org(tmp_path, human("sam", annotation=sso), member_team(sso))
    assert errors(repo) == []
    read = pipeline.read_org(DirectorySource(repo))
    desired = pipeline.desired_state(read, ALL)
    room = desired.objects["matrix/room/hiclaw-team-alpha"].spec
    assert sso in room["members"] and f"@sam:{D}" not in room["members"]
    assert desired.access is not None and sso in desired.access.group[f"@lead:{D}"]


# --------------------------------------------------------------------------- R417: full Matrix IDs


def test_annotation_naming_an_agents_account_is_an_identity_clash(tmp_path: Path) -> None:
    (d,) = errors(org(tmp_path, worker("alice"), human("ally", annotation=f"@alice:{D}")))
    assert (d.code, d.path) == ("R417", "$.metadata.annotations.gitops.hiclaw.io/matrix-user-id")
    assert "Worker `alice`" in d.message


def test_two_humans_with_one_annotation_clash(tmp_path: Path) -> None:
    sso = "@carol:sso.example.com"
    repo = org(tmp_path, human("carol", annotation=sso), human("caroline", annotation=sso))
    (d,) = errors(repo)
    assert d.code == "R417" and "Human `carol`" in d.message


def test_annotation_on_another_server_does_not_clash(tmp_path: Path) -> None:
    repo = org(tmp_path, worker("alice"), human("ally", annotation="@alice:other.example.org"))
    assert errors(repo) == []
    compiles(repo)


def test_server_name_decides_identity_clashes(tmp_path: Path) -> None:
    repo = org(tmp_path, worker("alice"), human("ally", annotation="@alice:chat.acme.io"))
    assert errors(repo) == []
    assert [d.code for d in errors(repo, server_name="chat.acme.io")] == ["R417"]


# --------------------------------------------------------------------------- R422: access keys a store takes


def settings_file(tmp_path: Path, identity: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(f"storage:\n  endpoint: 127.0.0.1:9\n  identity: {identity}\n" if identity else "{}\n")
    return path


@pytest.mark.parametrize(("identity", "short", "enough"), [("aws-iam", "abc", "abcd"), ("minio-admin", "ab", "abc")])
def test_a_runtime_name_too_short_for_the_stores_access_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], identity: str, short: str, enough: str
) -> None:
    repo = org(tmp_path / "org", worker(short), worker(enough),
               team("alpha", "  leader: {name: lead1}\n          workers: [{name: w1, workerName: x-y}]"))
    settings = settings_file(tmp_path, identity)
    assert main(["validate", str(repo), "--settings", str(settings)]) == 1
    err = capsys.readouterr().out
    found = [line for line in err.splitlines() if "error[R422]" in line]
    minimum = 4 if identity == "aws-iam" else 3
    assert [line.split(":")[0] for line in found] == sorted(
        ["0.yaml"] + (["2.yaml"] if identity == "aws-iam" else []))  # `x-y` is 3: enough for MinIO only
    assert f"runtime name `{short}` is {len(short)} characters" in err
    assert f"shorter than the {minimum} characters `storage.identity: {identity}` takes" in err
    assert f"`{enough}`" not in err
    assert "0.yaml:4:" in err  # metadata.name of the short Worker
    assert "at $.spec.workers[0].workerName" in err or identity == "minio-admin"


def test_access_keys_are_not_checked_without_an_identity_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = org(tmp_path / "org", worker("qa"))
    assert main(["validate", str(repo), "--settings", str(settings_file(tmp_path, ""))]) == 0
    assert errors(repo) == []  # and none with no settings at all: offline PR plans assume nothing of the store
