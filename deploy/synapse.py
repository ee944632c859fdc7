"""The local Matrix homeserver: Synapse from PyPI in its own virtualenv, SQLite, loopback only.

`Synapse.ensure()` installs Synapse into a virtualenv of its own when missing (`pip install matrix-synapse`,
about 30 s; Synapse is AGPL and runs as a separate process, never imported here), generates a configuration
once (SQLite, one HTTP listener on 127.0.0.1 at a free port, registration tokens required, raised rate limits,
no trusted key servers, background updates without sleeps), starts the server, waits until it answers and its
background updates are done, then provisions what a reconciler needs:

- the **actor** `@hiclaw-gitops:<server>` (a server admin, registered with the shared secret), its password in
  `matrix-actor-password` and an access token in `matrix-actor-token` in the data directory (mode 0600);
- the **Global Admin** (a person, a server admin), its password a secret of the reconciler's secret store
  (`matrix/<admin>/password`, shown by `hiclaw-gitops secrets get`), so a person can log in with any client;
- a **registration token** (`matrix-registration-token`, mode 0600) for the spec-standard registration flow the
  reconciler uses for agents and humans.

`stop()` stops only a server this launcher started (its pid file). Nothing here listens on or sends to any
address but 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.process import alive, cache_venv, free_port, kill, read_pid, spawn, stop, tail, write_private

SYNAPSE_VERSION = "1.163.2"
VENV_ENV = "HICLAW_SYNAPSE_VENV"  # where the virtualenv lives (default: the user's cache directory)
DEFAULT_SERVER_NAME = "localhost"
ACTOR = "hiclaw-gitops"
ADMIN = "admin"
ACTOR_PASSWORD_FILE = "matrix-actor-password"
ACTOR_TOKEN_FILE = "matrix-actor-token"
REGISTRATION_TOKEN_FILE = "matrix-registration-token"
RELAXED = {"per_second": 1000, "burst_count": 1000}
RATE_LIMITS = (
    "rc_message", "rc_registration", "rc_joins_per_room", "rc_room_creation", "rc_3pid_validation",
    "rc_admin_redaction", "rc_delayed_event_mgmt", "rc_presence", "rc_reports",
)
# Rate limits configured per kind of sender: each kind nested (a flat value would be ignored).
NESTED_LIMITS = {
    "rc_login": ("address", "account", "failed_attempts"),
    "rc_joins": ("local", "remote"),
    "rc_invites": ("per_room", "per_user", "per_issuer"),
}


class SynapseError(Exception):
    """The homeserver cannot be installed, configured or started; the message says why and what to run."""


def default_venv() -> Path:
    return cache_venv(f"synapse-{SYNAPSE_VERSION}", VENV_ENV)


@dataclass
class Synapse:
    """One Synapse homeserver with its data in `data_dir` (config, SQLite database, signing key, logs)."""

    data_dir: Path
    server_name: str = DEFAULT_SERVER_NAME
    venv: Path = field(default_factory=default_venv)
    wait: float = 90.0
    admin_user: str = ADMIN
    admin_password: Callable[[], str] | None = None  # the Global Admin's password (from the secret store)
    name: str = "matrix homeserver"

    def __post_init__(self) -> None:
        # Absolute: the server runs with its data folder as working directory, and the demo's is relative.
        self.data_dir = Path(self.data_dir).resolve()
        self.venv = Path(self.venv).resolve()

    # Files ---------------------------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.data_dir / "homeserver.yaml"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "homeserver.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "homeserver.out"

    @property
    def actor_password_file(self) -> Path:
        return self.data_dir / ACTOR_PASSWORD_FILE

    @property
    def actor_token_file(self) -> Path:
        return self.data_dir / ACTOR_TOKEN_FILE

    @property
    def registration_token_file(self) -> Path:
        return self.data_dir / REGISTRATION_TOKEN_FILE

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.config_file.read_text(encoding="utf-8"))
        return data

    @property
    def port(self) -> int:
        return int(self.config()["listeners"][0]["port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def actor(self) -> str:
        return f"@{ACTOR}:{self.server_name}"

    @property
    def admin_id(self) -> str:
        return f"@{self.admin_user}:{self.server_name}"

    # Component -----------------------------------------------------------------------------------------

    def ensure(self) -> str:
        """Install, configure, start and provision, each step only when needed; one line saying what happened."""
        done: list[str] = []
        if self.install():
            done.append(f"installed Synapse {SYNAPSE_VERSION} into {self.venv}")
        if self.configure():
            done.append(f"configured {self.config_file}")
        if self.answers():
            state = "running"
        else:
            self.start()
            state = f"started (pid {self.pid()}, log {self.log_file})"
        self.wait_ready()
        self.provision()
        done.append(state)
        return f"{self.name}: {', '.join(done)} at {self.url} (server name {self.server_name})"

    def install(self) -> bool:
        """Create the virtualenv and install Synapse when it is not there yet; whether anything was done."""
        if self._installed():
            return False
        self.venv.parent.mkdir(parents=True, exist_ok=True)
        steps = (
            [sys.executable, "-m", "venv", str(self.venv)],
            [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"matrix-synapse=={SYNAPSE_VERSION}"],
        )
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SynapseError(
                    f"{self.name}: `{' '.join(step)}` failed (exit {done.returncode}):\n{done.stderr[-2000:]}\n"
                    f"PyPI must be reachable to install Synapse; or point {VENV_ENV} at a virtualenv that has "
                    f"matrix-synapse=={SYNAPSE_VERSION}"
                )
        if not self._installed():
            raise SynapseError(f"{self.name}: Synapse was installed into {self.venv} but cannot be imported there")
        return True

    def _installed(self) -> bool:
        if not self.python.exists():
            return False
        probe = subprocess.run([str(self.python), "-c", "import synapse.app.homeserver"],
                               capture_output=True, check=False)
        return probe.returncode == 0

    def configure(self) -> bool:
        """Generate the configuration once (keys and secrets by Synapse itself), then make it local and
        permissive for a reconciler; whether a new configuration was written."""
        if self.config_file.exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        generated = subprocess.run(
            [str(self.python), "-m", "synapse.app.homeserver", "--server-name", self.server_name,
             "--config-path", str(self.config_file), "--data-directory", str(self.data_dir),
             "--generate-config", "--report-stats=no"],
            capture_output=True, text=True, check=False, cwd=self.data_dir,
        )
        if generated.returncode != 0:
            raise SynapseError(f"{self.name}: generating the configuration failed:\n{generated.stderr[-2000:]}")
        config = self.config()
        config.update({
            "listeners": [{"port": free_port(), "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                           "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
            "database": {"name": "sqlite3", "args": {"database": str(self.data_dir / "homeserver.db")}},
            "pid_file": str(self.pid_file),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "report_stats": False,
            "enable_registration": True,
            "registration_requires_token": True,
            "background_updates": {"sleep_enabled": False},
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "federation_domain_whitelist": [],
            "caches": {"sync_response_cache_duration": 0},  # a /sync answers with current state, never a copy
            "bcrypt_rounds": 4,  # a local test server: logins in milliseconds, not a quarter second each
        })
        config.update(dict.fromkeys(RATE_LIMITS, RELAXED))
        config.update({name: dict.fromkeys(kinds, RELAXED) for name, kinds in NESTED_LIMITS.items()})
        write_private(self.config_file, yaml.safe_dump(config, sort_keys=False))
        self._quiet_log()
        return True

    def _quiet_log(self) -> None:
        """Synapse logs to a file in the data directory, warnings and up (its INFO is a line per request)."""
        path = Path(str(self.config().get("log_config", "")))
        if not path.is_file():
            return
        log_config = yaml.safe_load(path.read_text(encoding="utf-8"))
        for handler in (log_config.get("handlers") or {}).values():
            if isinstance(handler, dict) and "filename" in handler:
                handler["filename"] = str(self.data_dir / "homeserver.log")
        log_config.setdefault("root", {})["level"] = "WARNING"
        path.write_text(yaml.safe_dump(log_config, sort_keys=False), encoding="utf-8")

    def start(self) -> int:
        """Start the server in its own session (it outlives this process and ignores the terminal's Ctrl-C)."""
        return spawn([str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_file)],
                     log_file=self.log_file, pid_file=self.pid_file, cwd=self.data_dir)

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def answers(self, timeout: float = 2.0) -> bool:
        if not self.config_file.exists():
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=timeout) as reply:
                return bool(reply.status == 200)
        except (OSError, ValueError):
            return False

    def wait_ready(self) -> None:
        """Until /health answers; then until the background updates of a fresh database are done (until then
        some admin calls fail with HTTP 500, deps §2)."""
        deadline = time.monotonic() + self.wait
        while not self.answers():
            pid = self.pid()
            if time.monotonic() > deadline or (pid is not None and not alive(pid)):
                raise SynapseError(
                    f"{self.name}: did not answer at {self.url}/health within {self.wait:.0f} s"
                    f"{'' if pid is None or alive(pid) else f' (pid {pid} exited)'}; last lines of "
                    f"{self.log_file}:\n{tail(self.log_file)}"
                )
            time.sleep(0.25)
        token = self.actor_token()
        while time.monotonic() < deadline:
            status = self.call("GET", "/_synapse/admin/v1/background_updates/status", token=token)
            if not (status.get("current_updates") or {}):
                return
            time.sleep(0.25)
        raise SynapseError(f"{self.name}: background updates still running after {self.wait:.0f} s")

    def stop(self) -> str:
        return stop(self.pid_file, b"synapse.app.homeserver", self.name, grace=30)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for tests)."""
        kill(self.pid_file)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_ready()

    # Accounts ------------------------------------------------------------------------------------------

    def provision(self) -> None:
        """The actor, the Global Admin and a registration token; each only when missing."""
        self.actor_token()
        if self.admin_password is not None:
            # The Global Admin is the person who runs the installation: a server admin here, so they (and the
            # tests' independent check) can read every room with the admin API, not only the rooms they are in.
            self.register(self.admin_user, self.admin_password(), admin=True)
        if not self.registration_token_file.exists():
            token = secrets.token_urlsafe(24)
            self.call("POST", "/_synapse/admin/v1/registration_tokens/new", {"token": token},
                      token=self.actor_token())
            write_private(self.registration_token_file, token + "\n")

    def actor_token(self) -> str:
        """A fresh access token of the actor (registered as a server admin on first use)."""
        cached: str | None = getattr(self, "_actor_token", None)
        if cached:
            return cached
        if not self.actor_password_file.exists():
            write_private(self.actor_password_file, secrets.token_hex(24) + "\n")
        password = self.actor_password_file.read_text(encoding="utf-8").strip()
        self.register(ACTOR, password, admin=True)
        answer = self.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": ACTOR},
            "password": password, "device_id": "HICLAW_LOCALSTACK",
        })
        token = str(answer["access_token"])
        self._actor_token = token
        write_private(self.actor_token_file, token + "\n")  # the reconciler starts with it: no login per pass
        return token

    def register(self, localpart: str, password: str, *, admin: bool) -> bool:
        """Register `localpart` with the shared secret; False when it already exists."""
        secret = str(self.config()["registration_shared_secret"])
        nonce = self.call("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        mac.update(f"{nonce}\0{localpart}\0{password}\0{'admin' if admin else 'notadmin'}".encode())
        try:
            self.call("POST", "/_synapse/admin/v1/register", {
                "nonce": nonce, "username": localpart, "password": password, "admin": admin,
                "mac": mac.hexdigest(),
            })
        except SynapseError as exc:
            if "M_USER_IN_USE" in str(exc):
                return False
            raise
        return True

    def call(self, method: str, path: str, body: Any = None, *, token: str = "") -> dict[str, Any]:
        """One request to the homeserver; SynapseError with the errcode (never the body sent) on failure."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                answer: dict[str, Any] = json.loads(reply.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", errors="replace")
            raise SynapseError(f"{self.name}: {method} {path}: HTTP {exc.code} {detail}") from None
        except OSError as exc:
            raise SynapseError(f"{self.name}: {method} {path}: {exc}") from None

    def settings(self) -> dict[str, Any]:
        """The `matrix` settings section of a reconciler using this homeserver."""
        return {
            "url": self.url,
            "server_name": self.server_name,
            "admin_user": self.admin_user,
            "actor_user": ACTOR,
            "actor_password_file": str(self.actor_password_file.resolve()),
            "actor_token_file": str(self.actor_token_file.resolve()),
            "registration_token_file": str(self.registration_token_file.resolve()),
        }

    def remove(self) -> None:
        """Stop the server and delete its data directory (tests)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
