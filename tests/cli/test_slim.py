"""A slim install: the core commands import no backend or daemon package, and a missing extra is one clear
sentence naming `pip install 'hiclaw-gitops[<extra>]'`. (The install itself is measured in docs/install.md.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from gitops import extras

from .conftest import EXAMPLE, clean_env

ROOT = Path(__file__).resolve().parents[2]
# Top-level modules of every optional package and of what they pull in.
OPTIONAL = ("docker", "kubernetes", "nio", "minio", "httpx", "prometheus_client", "watchfiles", "cryptography",
            "requests", "urllib3", "Crypto", "aiohttp", "anyio", "h11", "websocket")
BLOCKER = f"""
import importlib.abc, sys
BLOCKED = set({OPTIONAL!r})
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
from gitops.cli import main
code = main(sys.argv[1:])
sys.stderr.write("imported: " + ",".join(sorted({{m.split('.')[0] for m in sys.modules}} & BLOCKED)) + "\\n")
sys.exit(code)
"""


def slim(tmp_path: Path, *args: str, cwd: Path) -> tuple[int, str, str]:
    """The command line with every optional package missing, as in a `pip install hiclaw-gitops`."""
    script = tmp_path / "slim.py"
    script.write_text(BLOCKER)
    done = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    body, _, last = done.stderr.rstrip("\n").rpartition("\n")
    assert last.startswith("imported: "), done.stderr
    assert last == "imported: ", f"the core imported optional packages: {last}"
    return done.returncode, done.stdout, body


@pytest.fixture
def work(repo: Path) -> Path:
    team = repo / "org/teams/frontend-team.yaml"
    team.write_text(team.read_text().replace("peerMentions: true", "peerMentions: false"))
    return repo


@pytest.mark.parametrize("argv", [
    ["validate", "org"],
    ["validate", "org", "--format", "sarif"],
    ["plan", "org", "--base", "main", "--format", "markdown", "--out", "plan.json"],
    ["plan", "--repo", ".", "--branch", "main", "--path", "org"],
    ["graph", "org", "--format", "dot"],
    ["schema"],
    ["status", "--watch-dir", "--state-dir", "state"],
    ["history", "--repo", ".", "--state-dir", "state"],
])
def test_core_commands_need_no_optional_package(argv: list[str], work: Path, tmp_path: Path) -> None:
    code, out, err = slim(tmp_path, *argv, cwd=work)
    assert code == 0, err
    assert out


def test_show_needs_no_optional_package(work: Path, tmp_path: Path) -> None:
    assert slim(tmp_path, "plan", "org", "--base", "main", "--out", "plan.json", cwd=work)[0] == 0
    code, out, _ = slim(tmp_path, "show", "plan.json", "--format", "json", cwd=work)
    assert code == 0 and out == (work / "plan.json").read_text()


def test_a_missing_backend_extra_is_one_sentence(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "org")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"runtime": {"backend": "docker"},
                                                     "state_dir": str(tmp_path / "state")}))
    for argv in (["plan", "org"], ["apply", "org", "--auto-approve"], ["drift", "org"]):
        code, out, err = slim(tmp_path, *argv, "--settings", "s.yaml", cwd=tmp_path)
        assert code == 1 and out == ""
        assert err == ("hiclaw-gitops: the runtime provider (backend 'docker') needs the `docker` extra, which is "
                       "not installed (missing: docker): pip install 'hiclaw-gitops[docker]'"), argv
    assert not (tmp_path / "state").exists()


def test_the_daemon_without_its_extra(tmp_path: Path) -> None:
    code, _, err = slim(tmp_path, "run", "--once", "--repo", str(tmp_path), cwd=tmp_path)
    assert code == 1
    assert err.endswith("needs the `daemon` extra, which is not installed (missing: prometheus_client, watchfiles): "
                        "pip install 'hiclaw-gitops[daemon]'")


def test_every_extra_is_declared_and_all_has_them_all() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {d.split(">")[0].split("=")[0] for d in project["dependencies"]}
    assert core == {"pyyaml", "jsonschema", "fastjsonschema", "pathspec", "pygit2"}
    declared = project["optional-dependencies"]
    assert set(extras.MODULES) <= set(declared)
    assert set(extras.BACKEND_EXTRA.values()) <= set(declared)
    assert declared["all"] == ["hiclaw-gitops[" + ",".join(sorted(extras.MODULES, key=list(declared).index)) + "]"]
    providers = {"docker": "docker", "kubernetes": "kubernetes", "nio": "matrix-nio", "minio": "minio",
                 "httpx": "httpx", "prometheus_client": "prometheus-client", "watchfiles": "watchfiles"}
    for extra, modules in extras.MODULES.items():
        names = {d.split(">")[0] for d in declared[extra]}
        assert {providers[m] for m in modules} <= names, extra
    # the two set-up scripts install what they run
    assert "-e '.[all,test]'" in (ROOT / ".ci/run").read_text()
    assert "-e '.[all]'" in (ROOT / "deploy/demo.sh").read_text()


def test_history_without_status_in_the_slim_core(repo: Path, tmp_path: Path) -> None:
    code, out, _ = slim(tmp_path, "history", "--repo", str(repo), "--state-dir", str(tmp_path / "st"), cwd=tmp_path)
    assert code == 0 and out == "No status has been written yet.\n"
