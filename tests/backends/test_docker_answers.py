"""The Docker engine answers with malformed JSON or with JSON of an unexpected shape.

The backend talks to the real engine through a loopback unix-socket relay that forwards each request and
rewrites the engine's real answer on the way back — truncated, not JSON, a mapping where the API returns a
list, a container whose labels are a list, a create without an Id. Every such answer must end in the backend's
own TransientError or PermanentError naming the request and the object (`list containers: container
hiclaw-worker-x: …`), and through the command line in exit code 1 with one sentence — never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerharness import NETWORK, SESSION, DockerEnv

from backends.docker import DockerBackend, UnexpectedAnswer
from gitops.cli import main
from gitops.providers.protocol import PermanentError, Scope, TransientError

ENGINE = "/var/run/docker.sock"
Corrupt = Callable[[str, str, bytes], bytes | None]  # (method, target, real body) -> new body, or None: unchanged


def _read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> int:
    while (at := buffer.find(marker)) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the headers")
        buffer += chunk
    return at


def _headers(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    first, *rest = head.decode("latin-1").split("\r\n")
    pairs = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in rest if line)]
    return first, pairs


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return bytes(out)


class CorruptingRelay:
    """A unix socket in front of the engine's: one request per connection (`Connection: close`), the engine's
    real answer read whole, de-chunked, passed through `corrupt` and sent on with a Content-Length."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.corrupt: Corrupt = lambda method, target, body: None
        self.seen: list[tuple[str, str]] = []
        self.server: socket.socket | None = None

    def start(self) -> CorruptingRelay:
        self.path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(16)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.path.unlink(missing_ok=True)

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream, contextlib.suppress(OSError):
            request = bytearray()
            end = _read_until(client, request, b"\r\n\r\n")
            line, headers = _headers(bytes(request[:end]))
            length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
            body = bytes(request[end + 4 :])
            while len(body) < length:
                body += client.recv(65536)
            method, target, _ = line.split(" ", 2)
            self.seen.append((method, target))
            kept = [(k, v) for k, v in headers if k.lower() != "connection"] + [("Connection", "close")]
            upstream.connect(ENGINE)
            upstream.sendall(f"{line}\r\n".encode("latin-1")
                             + "".join(f"{k}: {v}\r\n" for k, v in kept).encode("latin-1") + b"\r\n" + body)
            answer = bytearray()
            while chunk := upstream.recv(65536):
                answer += chunk
            head, _, payload = bytes(answer).partition(b"\r\n\r\n")
            status, answer_headers = _headers(head)
            if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in answer_headers):
                payload = _dechunk(payload)
            changed = self.corrupt(method, target, payload)
            payload = payload if changed is None else changed
            out = [(k, v) for k, v in answer_headers if k.lower() not in ("transfer-encoding", "content-length",
                                                                         "connection")]
            out += [("Content-Length", str(len(payload))), ("Connection", "close")]
            client.sendall(f"{status}\r\n".encode("latin-1")
                           + "".join(f"{k}: {v}\r\n" for k, v in out).encode("latin-1") + b"\r\n" + payload)


@pytest.fixture
def relay(tmp_path: Path, docker_env: DockerEnv) -> Iterator[CorruptingRelay]:
    r = CorruptingRelay(tmp_path / "engine.sock").start()
    try:
        yield r
    finally:
        r.stop()


def backend(env: DockerEnv, relay: CorruptingRelay) -> DockerBackend:
    return DockerBackend(env.settings(docker_url=f"unix://{relay.path}"))


def when(method: str, pattern: str, replace: Callable[[bytes], bytes]) -> Corrupt:
    """Corrupt the answers to requests whose method and path match; leave every other answer alone."""
    compiled = re.compile(pattern)

    def corrupt(m: str, target: str, body: bytes) -> bytes | None:
        return replace(body) if m == method and compiled.search(target.split("?", 1)[0]) else None

    return corrupt


def _edit_containers(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def replace(body: bytes) -> bytes:
        containers = json.loads(body)
        for attrs in containers:
            edit(attrs)
        return json.dumps(containers).encode()

    return replace


LIST = r"/containers/json$"


# Observation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        (lambda body: body[: len(body) // 2], "malformed JSON"),
        (lambda body: b"<html>502 Bad Gateway</html>", "malformed JSON"),
        (lambda body: b"", "malformed JSON"),
        (lambda body: b'{"message": "ok"}', "answered with a mapping, not a list of containers"),
        (lambda body: b"null", "answered with null, not a list of containers"),
        (lambda body: b'[1, "two"]', "item 0 of the Docker engine's answer is a number, not a container"),
    ],
)
def test_a_container_list_that_is_not_one(
    docker_env: DockerEnv, relay: CorruptingRelay, replace: Callable[[bytes], bytes], expected: str
) -> None:
    relay.corrupt = when("GET", LIST, replace)
    b = backend(docker_env, relay)
    try:
        with pytest.raises((TransientError, PermanentError)) as caught:
            b.observe(Scope({}))
    finally:
        b.close()
    assert str(caught.value).startswith("list containers: ") and expected in str(caught.value)
    assert any(re.search(LIST, target.split("?", 1)[0]) for _, target in relay.seen)  # the engine was asked


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda a: a.update(Labels=["hiclaw.io/managed-by"]), "`Labels` as a list, not a mapping of strings"),
        (lambda a: a.update(Names="/oops"), "`Names` as a string, not a list of strings"),
        (lambda a: a.update(State={"Running": True}), "`State` as a mapping, not a string"),
        (lambda a: a.update(HostConfig=["bridge"]), "`HostConfig` as a list, not a mapping"),
        (lambda a: a.update(Id=12), "`Id` as a number, not a string"),
        (lambda a: a["Labels"].update({"hiclaw.io/spec-hash": 7}), "`Labels` as a mapping, not a mapping of strings"),
    ],
)
def test_a_container_entry_of_an_unexpected_shape_is_named(
    docker_env: DockerEnv, relay: CorruptingRelay, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    obj = docker_env.desired("answers")
    b = backend(docker_env, relay)
    try:
        b.apply(obj, "create", None, docker_env.resolve)  # a real container, seen through the relay
        assert obj.key in b.observe(Scope({}))
        relay.corrupt = when("GET", LIST, _edit_containers(edit))
        with pytest.raises(UnexpectedAnswer) as caught:
            b.observe(Scope({}))
        message = str(caught.value)
        assert message.startswith("list containers: container ") and expected in message
        if "Names" not in expected:
            assert obj.name in message  # the object, by name
        with pytest.raises(UnexpectedAnswer) as again:  # the lookup before an apply names its request too
            b.apply(obj, "update", None, docker_env.resolve)
        assert str(again.value).startswith(f"look up container {obj.name}: ")
    finally:
        b.close()


def test_an_applied_spec_label_that_is_not_ours_is_only_untrusted(
    docker_env: DockerEnv, relay: CorruptingRelay
) -> None:
    # Anyone with access to the engine can write labels: deep JSON, or not JSON, means "no intact record".
    obj = docker_env.desired("labels")
    b = backend(docker_env, relay)
    try:
        b.apply(obj, "create", None, docker_env.resolve)
        for text in ("[" * 5000 + "]" * 5000, "{not json", '{"image": 1}'):
            relay.corrupt = when("GET", LIST, _edit_containers(_set_label("hiclaw.io/applied-spec", text)))
            seen = b.observe(Scope({}))[obj.key]
            assert seen.recorded_hash is None and seen.spec["image"] == obj.spec["image"]
    finally:
        b.close()


def _set_label(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def edit(attrs: dict[str, Any]) -> None:
        attrs["Labels"][key] = value

    return edit


# Apply ------------------------------------------------------------------------------------------------------


def test_a_create_answer_without_an_id(docker_env: DockerEnv, relay: CorruptingRelay) -> None:
    obj = docker_env.desired("noid")
    relay.corrupt = when("POST", r"/containers/create$", lambda body: b'{"Warnings": []}')
    b = backend(docker_env, relay)
    try:
        with pytest.raises(UnexpectedAnswer) as caught:
            b.apply(obj, "create", None, docker_env.resolve)
        assert str(caught.value).startswith(f"create container {obj.name}: ") and "no container Id" in str(caught.value)
        relay.corrupt = lambda method, target, body: None
        assert b.apply(obj, "create", None, docker_env.resolve).ids["container_id"]  # the next pass adopts it
    finally:
        b.close()
    assert docker_env.count(obj.name) == 1


@pytest.mark.parametrize(
    ("name", "pattern", "replace", "doing", "expected"),
    [
        ("net-shape", r"/networks$", lambda body: b'"hiclaw-net"', "list network ", "a string, not a list of networks"),
        ("net-id", r"/networks$", lambda body: json.dumps([{"Name": NETWORK, "Id": 5}]).encode(), "list network ",
         "`Id` is a number"),
        ("image", r"/images/.+/json$", lambda body: body[:-3], "inspect image ", "malformed JSON"),
        ("lookup", r"/containers/json$", lambda body: b"[{]", "look up container ", "malformed JSON"),
    ],
)
def test_apply_reads_every_answer_carefully(
    docker_env: DockerEnv, relay: CorruptingRelay, name: str, pattern: str, replace: Callable[[bytes], bytes],
    doing: str, expected: str,
) -> None:
    obj = docker_env.desired(f"careful-{name}")
    relay.corrupt = when("GET", pattern, replace)
    b = backend(docker_env, relay)
    try:
        with pytest.raises((TransientError, PermanentError)) as caught:
            b.apply(obj, "create", None, docker_env.resolve)
    finally:
        b.close()
    assert str(caught.value).startswith(doing) and expected in str(caught.value), str(caught.value)
    assert docker_env.count(obj.name) == 0  # nothing was created on a misread answer


def test_a_version_answer_that_is_not_json(docker_env: DockerEnv, relay: CorruptingRelay) -> None:
    relay.corrupt = when("GET", r"^/version$", lambda body: b"Docker says hi")
    b = backend(docker_env, relay)
    try:
        with pytest.raises(TransientError) as caught:
            b.observe(Scope({}))
    finally:
        b.close()
    assert str(caught.value).startswith("connect: ") and "API version" in str(caught.value)


# Through the command line -----------------------------------------------------------------------------------


def test_plan_against_a_garbled_engine_exits_1_with_one_sentence(
    docker_env: DockerEnv, relay: CorruptingRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = tmp_path / "org"
    org.mkdir()
    (org / "w.yaml").write_text(
        f"apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: garbled-{SESSION}\nspec:\n  model: m\n"
    )
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"runtime:\n  backend: docker\n  instance: {docker_env.instance}\n  network: {docker_env.network}\n"
        f"  docker_url: unix://{relay.path}\n",
        encoding="utf-8",
    )
    relay.corrupt = when("GET", LIST, lambda body: b'{"containers": []}')
    monkeypatch.setenv("HICLAW_GITOPS_DEBUG", "1")  # an exception would propagate instead of being summarised
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["plan", str(org), "--settings", str(settings), "--state-dir", str(tmp_path / "state"),
                     "--color", "never"])
    assert code == 1
    assert "list containers: the Docker engine answered with a mapping, not a list of containers" in err.getvalue()
    assert "Traceback" not in err.getvalue() + out.getvalue()
