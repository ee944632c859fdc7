"""The local stack launcher: engine start-up decisions, the stand-in image, the settings it writes."""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from deploy import localstack
from deploy.localstack import DockerEngine, StackError, build_stand_in, is_static_elf, write_settings


def test_busybox_is_static_and_python_is_not() -> None:
    assert is_static_elf(localstack.BUSYBOX)
    assert not is_static_elf(Path(sys.executable).resolve())


def test_non_elf_is_not_static(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert not is_static_elf(script)


def test_build_context_holds_busybox_shell_and_agent() -> None:
    with tarfile.open(fileobj=localstack._context(localstack.BUSYBOX)) as tar:
        names = {m.name: m for m in tar.getmembers()}
        assert {"Dockerfile", "rootfs/bin/busybox", "rootfs/bin/sh", "rootfs/bin/agent"} <= set(names)
        assert names["rootfs/bin/sh"].issym() and names["rootfs/bin/sh"].linkname == "busybox"
        dockerfile = tar.extractfile("Dockerfile")
        assert dockerfile is not None and dockerfile.read().startswith(b"FROM scratch\n")


def test_dynamic_busybox_is_refused_with_the_install_hint(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="apt-get install -y busybox-static"):
        build_stand_in(object(), ["x:latest"], Path(sys.executable).resolve())
    with pytest.raises(StackError, match="busybox-static"):
        build_stand_in(object(), ["x:latest"], tmp_path / "missing")


def test_remote_engine_is_never_started(tmp_path: Path) -> None:
    engine = DockerEngine(tmp_path, url="unix:///nonexistent/docker.sock")
    with pytest.raises(StackError, match="only a local engine can be started"):
        engine.ensure()


def test_missing_dockerd_says_how_to_install(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(localstack, "engine_answers", lambda *a, **kw: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(StackError, match=r"apt-get update && apt-get install -y docker.io"):
        DockerEngine(tmp_path).ensure()


def test_starting_dockerd_needs_root(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(localstack, "engine_answers", lambda *a, **kw: False)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/sbin/dockerd")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(StackError, match="needs root"):
        DockerEngine(tmp_path).ensure()


def test_stop_leaves_an_engine_it_did_not_start(tmp_path: Path) -> None:
    assert "left running" in DockerEngine(tmp_path).stop()
    (tmp_path / "dockerd.pid").write_text("1\n")  # pid 1 is not a dockerd we started
    assert "left running" in DockerEngine(tmp_path).stop()


def test_settings_file_selects_the_local_docker_runtime(tmp_path: Path) -> None:
    from gitops.settings import load as settings_file

    path = write_settings(tmp_path / "state")
    settings, problems = settings_file.load_settings(path)
    assert problems == [] and settings is not None and settings.runtime is not None
    assert (settings.runtime.backend, settings.runtime.instance, settings.runtime.network) == (
        "docker", "hiclaw-local", "hiclaw-net",
    )
    assert Path(settings.state_dir) == (tmp_path / "state").resolve()
    assert settings.matrix is None and settings.storage is None and settings.gateway is None


def test_engine_answers_on_the_local_socket(docker_client: Any) -> None:
    assert localstack.engine_answers()
    assert not localstack.engine_answers("unix:///nonexistent/docker.sock")
    assert "running" in DockerEngine(Path("/nonexistent")).ensure()


def test_stand_in_image_logs_its_name_and_stops_at_once(docker_client: Any, images: Any) -> None:
    from dockerharness import SESSION, SESSION_LABEL

    api = docker_client.api
    created = api.create_container(images["openclaw"], environment={"HICLAW_WORKER_NAME": "zoe"},
                                   labels={SESSION_LABEL: SESSION},
                                   host_config=api.create_host_config(network_mode="none"))
    try:
        api.start(created["Id"])
        deadline = time.monotonic() + 5
        while b"started" not in api.logs(created["Id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "hiclaw stand-in agent zoe started" in api.logs(created["Id"]).decode()
        began = time.monotonic()
        api.stop(created["Id"], timeout=10)
        assert time.monotonic() - began < 5
        assert api.inspect_container(created["Id"])["State"]["ExitCode"] == 0  # its trap ran: no SIGKILL
    finally:
        api.remove_container(created["Id"], force=True)


def test_launchers_work_from_a_relative_state_dir(tmp_path: Path, monkeypatch: Any) -> None:
    """`bash deploy/demo.sh` passes `.hiclaw-local`: the servers run with their data folder as working directory,
    so a relative path written into their configuration would point inside itself."""
    from deploy.seaweedfs import SeaweedFS
    from deploy.synapse import Synapse

    monkeypatch.chdir(tmp_path)
    for launcher in (Synapse(Path(".hiclaw-local/synapse")), SeaweedFS(Path(".hiclaw-local/s3"))):
        assert launcher.data_dir.is_absolute() and launcher.data_dir == tmp_path / ".hiclaw-local" / \
            launcher.data_dir.name


def test_a_component_that_cannot_start_is_a_stack_error_naming_it(tmp_path: Path) -> None:
    from deploy.localstack import LocalStack, StackError

    class Broken:
        name = "matrix homeserver"

        def ensure(self) -> str:
            raise FileNotFoundError(2, "No such file or directory", "homeserver.yaml")

        def stop(self) -> str:
            return ""

    stack = LocalStack(tmp_path, [Broken()])
    with pytest.raises(StackError, match=r"matrix homeserver: .*homeserver\.yaml"):
        stack.up(say=lambda line: None)
