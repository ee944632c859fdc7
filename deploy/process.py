"""What the local stack's server launchers (Synapse, SeaweedFS) share: a virtualenv in the product's cache
folder, free loopback ports, owner-only secret files, and the servers they start — in a session of their own,
recorded in a pid file, stopped (SIGTERM, then SIGKILL) only when the pid is still theirs, and reaped by this
process whichever launcher object stops them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Servers started by this process, by pid: the demo starts one with one launcher object and stops it with
# another, and a Popen dropped while its server runs would be reported as a leak.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def cache_venv(name: str, override_env: str) -> Path:
    """`$override_env`, else `<cache folder>/<name>`; the cache folder is `HICLAW_GITOPS_CACHE_DIR`, else
    `$XDG_CACHE_HOME/hiclaw-gitops`, else `~/.cache/hiclaw-gitops` (docs/settings.md)."""
    configured = os.environ.get(override_env)
    if configured:
        return Path(configured)
    explicit = os.environ.get("HICLAW_GITOPS_CACHE_DIR")
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (Path(explicit) if explicit else xdg / "hiclaw-gitops") / name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def spawn(command: Sequence[str], *, log_file: Path, pid_file: Path, cwd: Path,
          env: Mapping[str, str] | None = None) -> int:
    """Start a server in its own session (it outlives this process and ignores the terminal's Ctrl-C), its
    output appended to `log_file`, its pid written to `pid_file`."""
    with log_file.open("ab") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=cwd, env=dict(env) if env is not None else None, start_new_session=True)
    pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
    _CHILDREN[process.pid] = process
    return process.pid


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def runs(pid: int, marker: bytes) -> bool:
    """Whether `pid`'s command line holds `marker` — that a recorded pid is still our server's."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid in _CHILDREN


def reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)


def stop(pid_file: Path, marker: bytes, name: str, grace: float) -> str:
    """Stop the server recorded in `pid_file` if it is still ours: SIGTERM, SIGKILL after `grace` seconds."""
    pid = read_pid(pid_file)
    if pid is None or not alive(pid) or not runs(pid, marker):
        pid_file.unlink(missing_ok=True)
        return f"{name}: not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    reap(pid)
    pid_file.unlink(missing_ok=True)
    return f"{name}: stopped (pid {pid})"


def kill(pid_file: Path) -> None:
    """SIGKILL the recorded server (a crash, for tests) and wait until it is gone."""
    pid = read_pid(pid_file)
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGKILL)
        reap(pid)
        while alive(pid):
            time.sleep(0.05)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
