"""Regression tests, one per class of bad input the fuzzer (and issue 11) found: each used to end in a
traceback, a hang or an unbounded read, and now yields one precise diagnostic — its code, file:line:column and
hint — through the pipeline, and exit code 1 with no traceback through `validate`, `plan` and `graph`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from fuzzharness import Run, check_diagnostics, check_run, cli, deadline, environment

from gitops.diagnostics import Diagnostic
from gitops.pipeline import read_org
from gitops.settings.load import load_settings
from gitops.source.files import DirectorySource
from gitops.source.trees import ref_source
from gitops.source.yamlparse import MAX_DEPTH

HEAD = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: alice\nspec:\n  model: qwen3.6-plus\n"
SECONDS = 10  # a hang fails the test instead of hanging the run


def org(tmp_path: Path, files: Mapping[str, str | bytes]) -> Path:
    root = tmp_path / "org"
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    root.mkdir(exist_ok=True)
    return root


def diagnostics(root: Path) -> list[Diagnostic]:
    with deadline(SECONDS):
        found = read_org(DirectorySource(root)).validation.diagnostics
    check_diagnostics(found, str(root))
    return found


def only(root: Path) -> Diagnostic:
    (d,) = diagnostics(root)
    return d


def commands(root: Path, *options: str) -> list[Run]:
    """validate, plan and graph on the org: each exits 1 without a traceback (and within the deadline)."""
    runs = []
    with environment({}, root.parent), deadline(SECONDS):
        for argv in (
            ("validate", str(root), "--format", "json"),
            ("plan", str(root), "--state-dir", str(root.parent / "state")),
            ("graph", str(root)),
        ):
            run = cli((*argv, "--color", "never", *options))
            check_run(run)
            assert run.code == 1, run
            runs.append(run)
    return runs


def where(d: Diagnostic) -> tuple[str, str, int, int]:
    return d.code, d.file, d.line, d.column


# YAML values the loader mis-handled ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tag", "column"),
    [("!!int three", "!!int", 14), ("!!float fast", "!!float", 14), ("!!timestamp yesterday", "!!timestamp", 14),
     ("!!bool maybe", "!!bool", 14), ("!!int ''", "!!int", 14)],
)
def test_explicit_tag_on_text_that_is_not_of_its_type(tmp_path: Path, value: str, tag: str, column: int) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD + f"  env:\n    RETRIES: {value}\n"})
    d = only(root)
    assert where(d) == ("Y110", "workers/alice.yaml", 8, column)
    assert tag in d.message and f"remove the `{tag}` tag" in d.hint
    assert "three" not in d.message  # a tagged value is never echoed: it might be a secret
    commands(root)


def test_unquoted_date_that_is_no_date(tmp_path: Path) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD + "  identity: 2024-13-45\n"})
    d = only(root)
    assert where(d) == ("Y110", "workers/alice.yaml", 7, 13)
    assert "2024-13-45" in d.message and 'quote the value if it is text: "2024-13-45"' in d.hint
    commands(root)


@pytest.mark.parametrize("literal", ["9" * 4301, "-" + "1" * 10_000, "0x" + "f" * 5000, "0b" + "1" * 6000])
def test_integer_longer_than_python_prints(tmp_path: Path, literal: str) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD + f"  expose:\n    - port: {literal}\n"})
    d = only(root)
    assert where(d) == ("Y110", "workers/alice.yaml", 8, 13)
    assert "digits is too long" in d.message and "quote the value" in d.hint
    for run in commands(root):
        assert literal[:50] not in run.out + run.err


def test_a_long_but_printable_integer_is_still_a_schema_error(tmp_path: Path) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD + "  expose:\n    - port: " + "9" * 100 + "\n"})
    assert [d.code for d in diagnostics(root)] == ["R420"]  # 100 digits: read, then refused as a port


@pytest.mark.parametrize(
    ("text", "line", "column", "char"),
    [(HEAD + "  identity: nul\x00byte\n", 7, 16, "U+0000"),
     (HEAD + "  soul: |\n    Writes docs.\n    Bell:\x07 here\n", 9, 10, "U+0007"),
     ("# é\n" + HEAD.replace("alice", "al\x1bice"), 5, 11, "U+001B"),
     (HEAD + "  identity: x\x7f\n", 7, 14, "U+007F")],
)
def test_control_character_is_located(tmp_path: Path, text: str, line: int, column: int, char: str) -> None:
    root = org(tmp_path, {"workers/alice.yaml": text})
    d = only(root)
    assert where(d) == ("Y101", "workers/alice.yaml", line, column)
    assert char in d.message and "escape" in d.hint
    commands(root)


# Structures ---------------------------------------------------------------------------------------------------


def test_deep_anchored_sequence_aliased_once(tmp_path: Path) -> None:
    deep = "[" * 600 + "]" * 600
    root = org(tmp_path, {"workers/alice.yaml": HEAD + f"  skills: &deep {deep}\n  agents: *deep\n"})
    d = only(root)
    assert d.code == "Y112" and (d.file, d.line) == ("workers/alice.yaml", 7)
    assert f"more than {MAX_DEPTH} levels" in d.message and "flatten" in d.hint
    commands(root)


def test_nesting_through_aliases_counts_in_full(tmp_path: Path) -> None:
    # Each alias adds one level to the previous anchor: shallow as written, 80 deep once expanded.
    chain = "".join(f"  a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 80))
    root = org(tmp_path, {"workers/alice.yaml": HEAD + "  a0: &a0 [x]\n" + chain})
    d = only(root)
    assert d.code == "Y112" and d.line > 7


def test_alias_bomb_is_still_counted(tmp_path: Path) -> None:
    rows = ["  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"  l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]" for i in range(1, 9)]
    root = org(tmp_path, {"workers/alice.yaml": HEAD + "\n".join(rows) + "\n"})
    d = only(root)
    assert d.code == "Y103" and "100,000 nodes" in d.message


@pytest.mark.parametrize(
    ("mapping", "key", "kind", "line", "column"),
    [("  env:\n    1: x\n", "1", "an integer", 8, 5), ("  env: {~: x}\n", "~", "empty (null)", 7, 9),
     ("  labels:\n    on: weekdays\n", "on", "a boolean", 8, 5),
     ("  env: {2024-01-31: x}\n", "2024-01-31", "a date or time", 7, 9),
     ("  env: {1.5: x}\n", "1.5", "a number", 7, 9)],
)
def test_non_string_key_in_the_org(tmp_path: Path, mapping: str, key: str, kind: str, line: int, column: int) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD + mapping})
    d = only(root)
    assert where(d) == ("Y111", "workers/alice.yaml", line, column)
    assert f"`{key}` is {kind}" in d.message and f'quote the key: "{key}"' in d.hint
    commands(root)


def test_non_string_key_in_the_settings(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("runtime:\n  backend: docker\n  images:\n    1: hiclaw/worker:1\n", encoding="utf-8")
    loaded, problems = load_settings(settings, env={})
    assert loaded is None
    (d,) = problems
    assert where(d) == ("Y111", str(settings), 4, 5)
    root = org(tmp_path, {"workers/alice.yaml": HEAD})
    commands(root, "--settings", str(settings))


def test_not_plain_data_tags_are_refused(tmp_path: Path) -> None:
    files = {f"workers/w{i}.yaml": HEAD.replace("alice", f"w{i}") + f"  {field}\n"
             for i, field in enumerate(["env: !!set {a, b}", "soul: !!binary aGVsbG8=", "skills: !!omap [a: 1]"])}
    found = diagnostics(org(tmp_path, files))
    assert [(d.code, d.line) for d in found] == [("Y107", 7)] * 3
    assert all("not plain data" in d.message for d in found)


# .hiclawignore ------------------------------------------------------------------------------------------------


def test_bad_ignore_patterns_are_reported_and_the_rest_apply(tmp_path: Path) -> None:
    ignore = "drafts/\n!\n\\\na\\\n[z-a].yaml\n*.wip.yaml\n"
    root = org(tmp_path, {".hiclawignore": ignore, "drafts/x.yaml": "[broken", "w.wip.yaml": "[broken",
                          "workers/alice.yaml": HEAD})
    found = diagnostics(root)
    assert [where(d) for d in found] == [("Y113", ".hiclawignore", n, 1) for n in (2, 3, 4, 5)]
    hints = [d.hint for d in found]
    assert "`!` negates" in hints[0] and "trailing" in hints[1] and "trailing" in hints[2] and "low to high" in hints[3]
    commands(root)


def test_hiclawignore_that_is_not_a_regular_file(tmp_path: Path) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD})
    os.mkfifo(root / ".hiclawignore")
    (d,) = diagnostics(root)
    assert (d.code, d.file) == ("Y109", ".hiclawignore") and "FIFO" in d.message


# Packages -----------------------------------------------------------------------------------------------------


def test_nul_in_a_file_package_path(tmp_path: Path) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD + '  package: "file://packages/alice\\0.zip"\n'})
    d = only(root)
    assert where(d) == ("R413", "workers/alice.yaml", 7, 12)
    assert "U+0000" in d.message and "file://./packages/" in d.hint
    commands(root)


# Orgs that validated, then crashed the compiler ---------------------------------------------------------------


def test_one_worker_exposing_a_port_twice(tmp_path: Path) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD + "  expose:\n    - port: 8080\n    - port: 8080\n"})
    d = only(root)
    assert where(d) == ("R420", "workers/alice.yaml", 9, 13) and "twice" in d.message
    commands(root)


def test_one_member_name_in_two_teams(tmp_path: Path) -> None:
    team = ("apiVersion: hiclaw.io/v1beta1\nkind: Team\nmetadata:\n  name: {t}\nspec:\n  leader:\n"
            "    name: {t}-lead\n    model: m\n  workers:\n    - name: shared\n      model: m\n")
    root = org(tmp_path, {"teams/a.yaml": team.format(t="a"), "teams/b.yaml": team.format(t="b")})
    d = only(root)
    assert where(d) == ("R418", "teams/b.yaml", 10, 13) and "hiclaw-worker-shared" in d.hint
    commands(root)


def test_plan_against_a_base_with_an_org_rule_error_says_the_base_is_invalid(tmp_path: Path) -> None:
    head = org(tmp_path, {"workers/alice.yaml": HEAD})
    base = tmp_path / "base"
    (base / "workers").mkdir(parents=True)
    (base / "workers" / "alice.yaml").write_text(HEAD + "  expose:\n    - port: 80\n    - port: 80\n")
    with environment({}, tmp_path), deadline(SECONDS):
        run = cli(("plan", str(head), "--base", str(base), "--color", "never"))
    check_run(run)
    assert run.code == 1
    assert "base" in run.err and "invalid" in run.err and "R420" in run.err, run.err


# Settings -----------------------------------------------------------------------------------------------------


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_two_gateway_routes_with_one_name(tmp_path: Path) -> None:
    path = settings_file(tmp_path, "gateway:\n  console_url: http://gw:8001\n  routes:\n"
                                   "    - name: default-ai-route\n    - name: default-ai-route\n      models: [m]\n")
    loaded, problems = load_settings(path, env={})
    (d,) = problems
    assert loaded is None and where(d) == ("C510", str(path), 5, 7)
    assert "routes[0]" in d.message and "own name" in d.hint
    commands(org(tmp_path, {"workers/alice.yaml": HEAD}), "--settings", str(path))


@pytest.mark.parametrize("url", ["http://[::1", "http://[zz]/", "http://[::1]:99999/", "https://h:port/"])
def test_unparseable_source_url(tmp_path: Path, url: str) -> None:
    path = settings_file(tmp_path, f"source:\n  url: '{url}'\n")
    loaded, problems = load_settings(path, env={})
    (d,) = problems
    assert loaded is None and where(d) == ("C511", str(path), 2, 3)
    assert "brackets" in d.hint and url not in d.message
    commands(org(tmp_path, {"workers/alice.yaml": HEAD}), "--settings", str(path))


def test_unparseable_url_from_a_flag_names_the_flag(tmp_path: Path) -> None:
    root = org(tmp_path, {"workers/alice.yaml": HEAD})
    with environment({}, tmp_path), deadline(SECONDS):
        run = cli(("validate", str(root), "--repo", "http://[::1", "--color", "never"))
    check_run(run)
    assert run.code == 1 and "C511" in run.err and "--repo" in run.err


@pytest.mark.parametrize("provider", ["matrix:\n  url", "storage:\n  endpoint", "gateway:\n  console_url"])
def test_unparseable_provider_url(tmp_path: Path, provider: str) -> None:
    path = settings_file(tmp_path, f"{provider}: 'http://[zz]/'\n")
    loaded, problems = load_settings(path, env={})
    (d,) = problems
    assert loaded is None and where(d) == ("C511", str(path), 2, 3)


def test_settings_naming_a_directory(tmp_path: Path) -> None:
    loaded, problems = load_settings(tmp_path, env={})
    (d,) = problems
    assert loaded is None and (d.code, d.file, d.line) == ("C505", str(tmp_path), 0)
    assert "a directory" in d.message and "--settings" in d.hint
    commands(org(tmp_path, {"workers/alice.yaml": HEAD}), "--settings", str(tmp_path))


def test_settings_naming_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "settings.yaml"
    os.mkfifo(fifo)
    with deadline(SECONDS):
        loaded, problems = load_settings(fifo, env={})
    (d,) = problems
    assert loaded is None and d.code == "C505" and "a FIFO" in d.message
    commands(org(tmp_path, {"workers/alice.yaml": HEAD}), "--settings", str(fifo))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_settings_naming_a_device_is_not_read(tmp_path: Path, device: str) -> None:
    link = tmp_path / "settings.yaml"
    link.symlink_to(device)
    for path in (Path(device), link):
        with deadline(SECONDS):
            loaded, problems = load_settings(path, env={})
        (d,) = problems
        assert loaded is None and d.code == "C505" and "character device" in d.message
    commands(org(tmp_path, {"workers/alice.yaml": HEAD}), "--settings", device)


def test_settings_file_over_the_cap_is_not_read_past_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB, sparse: reading it whole would take a second and a gigabyte
    with deadline(SECONDS):
        loaded, problems = load_settings(path, env={})
    (d,) = problems
    assert loaded is None and (d.code, d.file) == ("Y104", str(path))


def test_secret_file_that_is_a_fifo_or_too_large(tmp_path: Path) -> None:
    fifo, big = tmp_path / "token", tmp_path / "big"
    os.mkfifo(fifo)
    big.write_bytes(b"x" * (65 << 10))
    for secret in (fifo, big):
        path = settings_file(tmp_path, f"source:\n  url: https://git.example.com/org.git\n  token_file: {secret}\n")
        with deadline(SECONDS):
            loaded, problems = load_settings(path, env={}, secrets=True)
        (d,) = problems
        assert loaded is None and where(d) == ("C502", str(path), 3, 3)
        assert ("FIFO" if secret is fifo else "cap") in d.message


@pytest.mark.parametrize(
    ("value", "reason"),
    [("[" * 100_000 + "]" * 100_000, "nests more than 64 levels"), ("[" * 65 + "]" * 65, "nests more than"),
     ('[{"name": "r"', "is not JSON"), ("not json", "is not JSON")],
)
def test_env_override_with_json_that_cannot_be_read(tmp_path: Path, value: str, reason: str) -> None:
    env = {"HICLAW_GITOPS_GATEWAY_ROUTES": value}
    with deadline(SECONDS):
        loaded, problems = load_settings(None, env=env)
    (d,) = problems
    assert loaded is None and (d.code, d.file, d.line) == ("C512", "$HICLAW_GITOPS_GATEWAY_ROUTES", 0)
    assert reason in d.message and value[:20] not in d.message and "JSON" in d.hint


def test_env_override_with_json_that_can_be_read(tmp_path: Path) -> None:
    env = {"HICLAW_GITOPS_GATEWAY_ROUTES": json.dumps([{"name": "r1"}, {"name": "r2", "models": ["m"]}]),
           "HICLAW_GITOPS_GATEWAY_CONSOLE_URL": "http://gw:8001"}
    loaded, problems = load_settings(None, env=env)
    assert loaded is not None and not problems
    assert loaded.gateway is not None and [r.name for r in loaded.gateway.routes] == ["r1", "r2"]


def test_env_override_with_duplicate_routes_names_the_variable(tmp_path: Path) -> None:
    env = {"HICLAW_GITOPS_GATEWAY_ROUTES": '[{"name": "r"}, {"name": "r"}]',
           "HICLAW_GITOPS_GATEWAY_CONSOLE_URL": "http://gw:8001"}
    loaded, problems = load_settings(None, env=env)
    (d,) = problems
    assert loaded is None and (d.code, d.file) == ("C510", "$HICLAW_GITOPS_GATEWAY_ROUTES")


@pytest.mark.parametrize("text", ["s\n", "- a\n- b\n", "42\n"])
def test_settings_that_are_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = settings_file(tmp_path, text)
    loaded, problems = load_settings(path, env={})
    (d,) = problems
    assert loaded is None and where(d) == ("Y106", str(path), 1, 1) and "section" in d.hint


def test_empty_secret_file_has_a_hint(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n", encoding="utf-8")
    token.chmod(0o600)
    path = settings_file(tmp_path, f"source:\n  url: https://git.example.com/org.git\n  token_file: {token}\n")
    loaded, problems = load_settings(path, env={}, secrets=True)
    (d,) = problems
    assert loaded is None and d.code == "C502" and "empty" in d.message and d.hint


def test_a_provider_section_made_by_a_variable_names_the_variable(tmp_path: Path) -> None:
    # The variable brings in the whole `gateway` section, whose endpoint is then missing: the diagnostic
    # names the variable, not line 0 of a settings file that has no `gateway` at all.
    path = settings_file(tmp_path, "source:\n  branch: main\n")
    for settings in (path, None):
        loaded, problems = load_settings(settings, env={"HICLAW_GITOPS_GATEWAY_AI_GATEWAY_URL": "http://gw"})
        (d,) = problems
        assert loaded is None and (d.code, d.file, d.line) == ("C501", "$HICLAW_GITOPS_GATEWAY_AI_GATEWAY_URL", 0)


def test_bad_ignore_patterns_in_a_commit(tmp_path: Path) -> None:
    # The same through a git commit tree (`plan --base REF`, the daemon): reported, and the rest apply.
    root = org(tmp_path, {".hiclawignore": "drafts/\n[z-a]\n", "drafts/x.yaml": "[broken", "workers/alice.yaml": HEAD})
    git = ("git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com")
    for argv in (("git", "init", "-q", str(root)), (*git, "add", "-A"), (*git, "commit", "-qm", "org")):
        subprocess.run(argv, check=True, capture_output=True)
    source, _ = ref_source(root, "HEAD")
    read = read_org(source)
    check_diagnostics(read.validation.diagnostics, "commit")
    assert [where(d) for d in read.validation.diagnostics] == [("Y113", ".hiclawignore", 2, 1)]
    assert [r.ref for r in read.validation.org.resources()] == ["Worker/alice"]


@pytest.mark.parametrize(
    ("text", "env", "name", "file"),
    [('state_dir: "\\0"\n', {}, "state_dir", "FILE"),
     ('source:\n  branch: "main\\n"\n', {}, "source.branch", "FILE"),
     ("", {"HICLAW_GITOPS_STATE_DIR": "state\x07"}, "state_dir", "$HICLAW_GITOPS_STATE_DIR"),
     ("", {"HICLAW_GITOPS_GATEWAY_ROUTES": '[{"name": "r\\u0000"}]', "HICLAW_GITOPS_GATEWAY_CONSOLE_URL": "http://g"},
      "gateway.routes", "$HICLAW_GITOPS_GATEWAY_ROUTES")],
)
def test_control_character_in_a_setting(
    tmp_path: Path, text: str, env: dict[str, str], name: str, file: str
) -> None:
    path = settings_file(tmp_path, text)
    loaded, problems = load_settings(path, env=env)
    (d,) = problems
    assert loaded is None and d.code == "C513" and f"`{name}` holds the control character" in d.message
    assert d.file == (str(path) if file == "FILE" else file) and (d.line >= 1) == (file == "FILE")
    root = org(tmp_path, {"workers/alice.yaml": HEAD})
    with environment(env, tmp_path), deadline(SECONDS):
        for command in ("validate", "graph", "plan"):
            run = cli((command, str(root), "--settings", str(path), "--color", "never"))
            check_run(run)
            assert run.code == 1 and "C513" in run.err, run
