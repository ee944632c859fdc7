"""Real git for the tests: bare repositories, work trees driven by the git CLI, and a loopback git daemon."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

BRANCH = "main"


def worker(name: str, model: str = "qwen3.6-plus") -> str:
    return f"apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: {name}\nspec:\n  model: {model}\n"


def human(name: str) -> str:
    return (
        f"apiVersion: hiclaw.io/v1beta1\nkind: Human\nmetadata:\n  name: {name}\n"
        f"spec:\n  displayName: {name.title()}\n  permissionLevel: 1\n"
    )


# `model` must be a string and `colour` is no field of a Worker: two schema errors on known lines.
INVALID_WORKER = (
    "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: alice\nspec:\n  model: 42\n  colour: red\n"
)


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Dev",
        GIT_AUTHOR_EMAIL="dev@example.com",
        GIT_COMMITTER_NAME="Dev",
        GIT_COMMITTER_EMAIL="dev@example.com",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, check: bool = True,
        home: Path | None = None) -> str:
    run_env = dict(env) if env is not None else git_env(home or Path(cwd or ".").resolve())
    done = subprocess.run(["git", *args], cwd=cwd, env=run_env, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout.strip()


class OrgRepo:
    """A bare 'remote' and a work tree that commits and pushes to it, as a user would."""

    def __init__(self, root: Path, name: str = "org.git") -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = git_env(self.home)
        self.bare = root / name
        self.work = root / "work"
        git("init", "-q", "--bare", "-b", BRANCH, str(self.bare), env=self.env)
        git("init", "-q", "-b", BRANCH, str(self.work), env=self.env)
        self.git("remote", "add", "origin", str(self.bare))

    @property
    def url(self) -> str:
        return str(self.bare)

    def git(self, *args: str, check: bool = True) -> str:
        return git(*args, cwd=self.work, env=self.env, check=check)

    def bare_git(self, *args: str, check: bool = True) -> str:
        return git(f"--git-dir={self.bare}", *args, env=self.env, check=check)

    def write(self, files: Mapping[str, str | bytes | None]) -> None:
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")

    def symlink(self, rel: str, target: str) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)

    def commit(self, message: str, files: Mapping[str, str | bytes | None] | None = None,
               extra: tuple[str, ...] = ()) -> str:
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git(*extra, "commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self, force: bool = False, branch: str = BRANCH) -> None:
        self.git("push", "-q", *(["--force"] if force else []), "origin", f"HEAD:refs/heads/{branch}")

    def commit_and_push(self, message: str, files: Mapping[str, str | bytes | None] | None = None) -> str:
        sha = self.commit(message, files)
        self.push()
        return sha

    def tip(self, branch: str = BRANCH) -> str | None:
        out = self.bare_git("rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
        return out or None

    def log(self, branch: str) -> list[str]:
        """Commits of a branch of the remote, newest first (empty when the branch does not exist)."""
        if self.tip(branch) is None:
            return []
        return self.bare_git("rev-list", "--first-parent", f"refs/heads/{branch}").split()

    def show(self, ref: str, path: str) -> str:
        return self.bare_git("show", f"{ref}:{path}")

    def message(self, ref: str) -> str:
        return self.bare_git("log", "-1", "--format=%B", ref)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.02) -> object:
    """Poll until condition() is truthy; fail loudly on timeout (tests never sleep blindly)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class GitDaemon:
    """`git daemon` on loopback serving every repository under base (push enabled)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        self.proc = subprocess.Popen(
            ["git", "daemon", "--export-all", "--enable=receive-pack", "--informative-errors", "--reuseaddr",
             f"--base-path={self.base}", f"--port={self.port}", "--listen=127.0.0.1", str(self.base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=git_env(self.base),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"git daemon exited at start ({self.proc.returncode}): {err}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.02)
        self.stop()
        raise AssertionError("git daemon did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
