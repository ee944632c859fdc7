"""The Docker backend on a real engine: lifecycle, states, runtime switch, drift, crashes, failures, secrets."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import time
from typing import Any

import docker.errors
import pytest
import requests
from dockerharness import DockerEnv

from backends.docker import LABEL_APPLIED, LABEL_MANAGED_BY, LABEL_SPEC_HASH, DockerBackend, classify
from gitops.objects import ManagedObject, canonical_json
from gitops.providers.protocol import Outcome, PermanentError, Scope, TransientError
from gitops.settings.model import RuntimeSettings

SECRET = "s3cr3t-value-for-"  # what the test resolver puts in front of every secret name


def container_id(env: DockerEnv, obj: ManagedObject) -> str:
    return str(env.inspect(obj)["Id"])


def status(env: DockerEnv, obj: ManagedObject) -> str:
    return str(env.inspect(obj)["State"]["Status"])


def logs_until(env: DockerEnv, obj: ManagedObject, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = str(env.api.logs(obj.name).decode())
        if text in out:
            return out
        time.sleep(0.05)
    return out


def recreate_by_hand(env: DockerEnv, obj: ManagedObject, labels: dict[str, str]) -> None:
    """Someone replaced the container behind our back, with these labels."""
    env.api.remove_container(obj.name, force=True)
    env.api.create_container(obj.spec["image"], name=obj.name, labels=labels,
                             host_config=env.api.create_host_config(network_mode="none"))


@pytest.fixture
def backend(docker_env: DockerEnv) -> Any:
    instance = docker_env.backend()
    yield instance
    instance.close()


# Lifecycle -----------------------------------------------------------------------------------------------


def test_create_runs_the_agent_with_resolved_env_and_observes_it(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("alice")
    assert backend.apply(obj, "create", None, docker_env.resolve).outcome is Outcome.CREATED

    attrs = docker_env.inspect(obj)
    assert attrs["Name"] == "/hiclaw-worker-alice"
    assert attrs["State"]["Status"] == "running"
    assert attrs["HostConfig"]["NetworkMode"] == docker_env.network
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["HostConfig"]["PortBindings"] in (None, {})  # exposed, never published to a random host port
    assert "8088/tcp" in attrs["Config"]["ExposedPorts"]
    assert attrs["Config"]["WorkingDir"] == "/root/hiclaw-fs/agents/alice"
    env = docker_env.env_of(obj)
    assert env["HICLAW_WORKER_NAME"] == "alice"
    assert env["HICLAW_WORKER_MATRIX_TOKEN"] == SECRET + "agent-alice-matrix-token"
    assert "hiclaw stand-in agent alice started" in logs_until(docker_env, obj, "started")

    seen = backend.observe(Scope({}))[obj.key]
    assert seen.recorded_hash == obj.hash
    assert seen.spec == {**obj.spec}  # the applied record, overlaid with what Docker shows: all agree
    assert LABEL_SPEC_HASH not in seen.spec["labels"] and LABEL_APPLIED not in seen.spec["labels"]


def test_observe_is_one_list_call(docker_env: DockerEnv, backend: DockerBackend, monkeypatch: Any) -> None:
    for name in ("one", "two", "three"):
        backend.apply(docker_env.desired(name, state="Sleeping"), "create", None, docker_env.resolve)
    api = backend._api()
    calls: list[str] = []
    original = api.containers
    def listing(*a: Any, **kw: Any) -> Any:
        calls.append("list")
        return original(*a, **kw)

    monkeypatch.setattr(api, "containers", listing)
    monkeypatch.setattr(api, "inspect_container", lambda *a, **kw: pytest.fail("one call per container"))
    assert len(backend.observe(Scope({}))) == 3
    assert calls == ["list"]


def test_sleeping_is_a_kept_container_and_enforced_state_changes_start_and_stop_it(
    docker_env: DockerEnv, backend: DockerBackend
) -> None:
    sleeping = docker_env.desired("bob", state="Sleeping")
    assert backend.apply(sleeping, "create", None, docker_env.resolve).outcome is Outcome.CREATED
    assert status(docker_env, sleeping) == "created"
    assert backend.observe(Scope({}))[sleeping.key].spec["state"] == "Sleeping"
    assert backend.observe(Scope({}))[sleeping.key].recorded_hash == sleeping.hash
    first = container_id(docker_env, sleeping)

    running = docker_env.desired("bob", state="Running")
    assert backend.apply(running, "update", None, docker_env.resolve).outcome is Outcome.CONFIGURED
    assert (container_id(docker_env, running), status(docker_env, running)) == (first, "running")
    assert backend.observe(Scope({}))[running.key].recorded_hash == running.hash

    started = time.monotonic()
    assert backend.apply(sleeping, "update", None, docker_env.resolve).outcome is Outcome.CONFIGURED
    assert time.monotonic() - started < 5, "the stand-in agent must stop on SIGTERM, not after the timeout"
    assert (container_id(docker_env, sleeping), status(docker_env, sleeping)) == (first, "exited")
    assert backend.observe(Scope({}))[sleeping.key].recorded_hash == sleeping.hash
    assert backend.apply(sleeping, "update", None, docker_env.resolve).outcome is Outcome.UNCHANGED


def test_paused_container_is_sleeping_and_unpaused_when_running_is_enforced(
    docker_env: DockerEnv, backend: DockerBackend
) -> None:
    obj = docker_env.desired("paula")
    backend.apply(obj, "create", None, docker_env.resolve)
    docker_env.api.pause(obj.name)
    seen = backend.observe(Scope({}))[obj.key]
    assert seen.spec["state"] == "Sleeping" and seen.recorded_hash != obj.hash
    assert backend.apply(obj, "update", seen, docker_env.resolve).outcome is Outcome.CONFIGURED
    assert status(docker_env, obj) == "running"
    assert backend.observe(Scope({}))[obj.key].recorded_hash == obj.hash


def test_unenforced_state_is_the_agents_own_but_a_declared_change_recreates(
    docker_env: DockerEnv, backend: DockerBackend
) -> None:
    running = docker_env.desired("carol", state="Running", enforce=False)
    backend.apply(running, "create", None, docker_env.resolve)
    first = container_id(docker_env, running)

    docker_env.api.stop(running.name, timeout=10)  # the agent went to sleep by itself (idle timeout)
    seen = backend.observe(Scope({}))[running.key]
    assert seen.spec["state"] == "Sleeping"
    assert seen.recorded_hash == running.hash  # not drift: state is not enforced

    sleeping = docker_env.desired("carol", state="Sleeping", enforce=False)
    assert backend.apply(sleeping, "update", seen, docker_env.resolve).outcome is Outcome.CONFIGURED
    assert container_id(docker_env, sleeping) != first  # the declared state lives on an immutable label
    assert status(docker_env, sleeping) == "created"
    assert backend.observe(Scope({}))[sleeping.key].recorded_hash == sleeping.hash


def test_stopped_removes_the_container(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("dave")
    backend.apply(obj, "create", None, docker_env.resolve)
    stopped = docker_env.desired("dave", state="Stopped")
    assert backend.apply(stopped, "update", None, docker_env.resolve).outcome is Outcome.DELETED
    assert docker_env.count(obj.name) == 0
    assert obj.key not in backend.observe(Scope({}))
    assert backend.apply(stopped, "create", None, docker_env.resolve).outcome is Outcome.UNCHANGED
    assert docker_env.count(obj.name) == 0


def test_config_change_recreates_with_the_same_identity(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("erin", config="cfg-1")
    backend.apply(obj, "create", None, docker_env.resolve)
    first = container_id(docker_env, obj)
    changed = docker_env.desired("erin", config="cfg-2")
    assert backend.apply(changed, "replace", None, docker_env.resolve).outcome is Outcome.CONFIGURED
    assert container_id(docker_env, changed) != first
    assert status(docker_env, changed) == "running"
    assert docker_env.env_of(changed)["HICLAW_WORKER_NAME"] == "erin"
    assert backend.observe(Scope({}))[changed.key].recorded_hash == changed.hash


def test_runtime_switch_keeps_name_and_identity_env(docker_env: DockerEnv, backend: DockerBackend) -> None:
    openclaw = docker_env.desired("frank", runtime="openclaw")
    backend.apply(openclaw, "create", None, docker_env.resolve)
    before = docker_env.env_of(openclaw)
    copaw = docker_env.replaced(openclaw)
    assert copaw.spec["runtime"] == "copaw" and copaw.name == openclaw.name
    seen = backend.observe(Scope({}))[openclaw.key]
    assert backend.apply(copaw, "replace", seen, docker_env.resolve).outcome is Outcome.CONFIGURED

    attrs = docker_env.inspect(copaw)
    assert attrs["Config"]["Image"] == docker_env.images["copaw"]
    assert attrs["Config"]["Labels"]["hiclaw.io/runtime"] == "copaw"
    after = docker_env.env_of(copaw)
    for name in ("HICLAW_WORKER_NAME", "HICLAW_WORKER_CR_NAME", "HICLAW_WORKER_MATRIX_TOKEN", "HOME"):
        assert after[name] == before[name], name
    assert docker_env.count(copaw.name) == 1
    assert backend.observe(Scope({}))[copaw.key].recorded_hash == copaw.hash


def test_concurrent_applies_share_one_backend(docker_env: DockerEnv, backend: DockerBackend) -> None:
    """The executor applies independent changes from worker threads; the first ones race to create the network."""
    objs = [docker_env.desired(f"crowd-{i}", state="Sleeping") for i in range(6)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda o: backend.apply(o, "create", None, docker_env.resolve).outcome, objs))
    assert outcomes == [Outcome.CREATED] * 6
    seen = backend.observe(Scope({}))
    assert all(seen[o.key].recorded_hash == o.hash for o in objs)
    assert len(docker_env.api.networks(names=[docker_env.network])) == 1


def test_duplicate_networks_of_ours_are_cleaned_up(docker_env: DockerEnv, backend: DockerBackend) -> None:
    """Duplicates left by an earlier race (Docker allows several networks of one name) are reduced to one."""
    labels = {LABEL_MANAGED_BY: docker_env.instance}
    for _ in range(2):
        docker_env.api.create_network(docker_env.network, driver="bridge", labels=labels)
    obj = docker_env.desired("dora", state="Sleeping")
    assert backend.apply(obj, "create", None, docker_env.resolve).outcome is Outcome.CREATED
    assert len(docker_env.api.networks(names=[docker_env.network])) == 1


# Drift ---------------------------------------------------------------------------------------------------


def test_removed_behind_our_back_is_observed_absent_and_recreated(
    docker_env: DockerEnv, backend: DockerBackend
) -> None:
    obj = docker_env.desired("gina")
    backend.apply(obj, "create", None, docker_env.resolve)
    docker_env.api.remove_container(obj.name, force=True)
    assert obj.key not in backend.observe(Scope({}))
    assert backend.apply(obj, "update", None, docker_env.resolve).outcome is Outcome.CREATED
    assert backend.observe(Scope({}))[obj.key].recorded_hash == obj.hash


def test_stopped_behind_our_back_shows_sleeping(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("hank")  # enforce_state: the observed state is part of the recorded hash
    backend.apply(obj, "create", None, docker_env.resolve)
    docker_env.api.stop(obj.name, timeout=10)
    seen = backend.observe(Scope({}))[obj.key]
    assert seen.spec["state"] == "Sleeping"
    assert seen.recorded_hash == docker_env.desired("hank", state="Sleeping").hash != obj.hash


def test_labels_changed_behind_our_back_break_the_record(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("ivan")
    backend.apply(obj, "create", None, docker_env.resolve)
    labels = dict(docker_env.inspect(obj)["Config"]["Labels"])

    edited = {**labels, "hiclaw.io/role": "team_leader"}  # a label edited, our record copied as it was
    recreate_by_hand(docker_env, obj, edited)
    seen = backend.observe(Scope({}))[obj.key]
    assert seen.recorded_hash != obj.hash
    assert seen.spec["labels"]["hiclaw.io/role"] == "team_leader"

    forged = {**labels, LABEL_SPEC_HASH: "0" * 16}  # the hash label disagrees with the applied record
    recreate_by_hand(docker_env, obj, forged)
    assert backend.observe(Scope({}))[obj.key].recorded_hash != obj.hash

    no_record = {k: v for k, v in labels.items() if k not in (LABEL_SPEC_HASH, LABEL_APPLIED)}
    recreate_by_hand(docker_env, obj, no_record)
    seen = backend.observe(Scope({}))[obj.key]
    assert seen.recorded_hash is None
    assert set(seen.spec) == {"image", "labels", "state"}

    assert backend.apply(obj, "replace", seen, docker_env.resolve).outcome is Outcome.CONFIGURED
    assert backend.observe(Scope({}))[obj.key].recorded_hash == obj.hash
    assert docker_env.count(obj.name) == 1


def test_image_tag_moved_is_image_drift(docker_env: DockerEnv, backend: DockerBackend) -> None:
    tag = f"hiclaw-test/drift-{docker_env.instance}:latest"
    docker_env.client.images.get(docker_env.images["openclaw"]).tag(tag)
    try:
        obj = docker_env.desired("jane", image=tag)
        backend.apply(obj, "create", None, docker_env.resolve)
        assert backend.observe(Scope({}))[obj.key].recorded_hash == obj.hash
        docker_env.api.commit(obj.name, repository=tag.rsplit(":", 1)[0], tag="latest", changes=["LABEL rebuilt=1"])
        seen = backend.observe(Scope({}))[obj.key]
        assert seen.spec["image"].startswith("sha256:")
        assert seen.recorded_hash is None
        assert backend.apply(obj, "replace", seen, docker_env.resolve).outcome is Outcome.CONFIGURED
        assert backend.observe(Scope({}))[obj.key].recorded_hash == obj.hash
    finally:
        docker_env.cleanup()
        docker_env.api.remove_image(tag, force=True)


# Crashes and failures ------------------------------------------------------------------------------------


def test_adoption_after_a_crash_keeps_the_container(docker_env: DockerEnv, backend: DockerBackend) -> None:
    """The run that created the container died before the inventory recorded it: the next run adopts it."""
    obj = docker_env.desired("kate")
    backend.apply(obj, "create", None, docker_env.resolve)
    first = container_id(docker_env, obj)
    restarted = docker_env.backend()
    try:
        assert obj.key in restarted.observe(Scope({}))
        assert restarted.apply(obj, "create", None, docker_env.resolve).outcome is Outcome.UNCHANGED
        assert container_id(docker_env, obj) == first
        docker_env.api.stop(obj.name, timeout=10)  # died before it was started: adopt, and start it
        assert restarted.apply(obj, "create", None, docker_env.resolve).outcome is Outcome.CONFIGURED
        assert (container_id(docker_env, obj), status(docker_env, obj)) == (first, "running")
    finally:
        restarted.close()


def test_dead_engine_is_transient(docker_env: DockerEnv, tmp_path: Any) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    dead = DockerBackend(RuntimeSettings(instance=docker_env.instance, docker_url=url))
    obj = docker_env.desired("luke")
    try:
        with pytest.raises(TransientError, match="unreachable") as observed:
            dead.observe(Scope({}))
        assert url in str(observed.value)
        with pytest.raises(TransientError):
            dead.apply(obj, "create", None, docker_env.resolve)
        with pytest.raises(TransientError):
            dead.delete(obj)
    finally:
        dead.close()


def test_missing_image_or_bad_spec_is_permanent_and_keeps_the_old_container(
    docker_env: DockerEnv, backend: DockerBackend
) -> None:
    obj = docker_env.desired("mia")
    backend.apply(obj, "create", None, docker_env.resolve)
    first = container_id(docker_env, obj)
    missing = docker_env.desired("mia", image="hiclaw-test/not-built:never")
    with pytest.raises(PermanentError) as raised:
        backend.apply(missing, "replace", None, docker_env.resolve)
    message = str(raised.value)
    assert "hiclaw-test/not-built:never" in message
    assert "never pulled" in message and "docker build -t hiclaw-test/not-built:never" in message
    assert container_id(docker_env, obj) == first
    misconfigured = DockerBackend(dataclasses.replace(docker_env.settings(), restart_policy="often"))
    newcomer = docker_env.desired("polly")
    with pytest.raises(PermanentError, match="restart policy 'often'"):
        misconfigured.apply(newcomer, "create", None, docker_env.resolve)
    misconfigured.close()
    assert newcomer.key not in backend.observe(Scope({}))
    assert (container_id(docker_env, obj), status(docker_env, obj)) == (first, "running")


def test_entrypoint_that_cannot_start_is_permanent_and_leaves_nothing(
    docker_env: DockerEnv, backend: DockerBackend
) -> None:
    obj = docker_env.desired("nina")
    docker_env.api.create_container(docker_env.images["openclaw"], name="nina-base")
    image = docker_env.api.commit("nina-base", repository="hiclaw-test/broken", tag=docker_env.instance,
                                  changes=['ENTRYPOINT ["/bin/missing-agent"]'])
    docker_env.api.remove_container("nina-base", force=True)
    broken = docker_env.desired("nina", image=f"hiclaw-test/broken:{docker_env.instance}")
    try:
        with pytest.raises(PermanentError, match="cannot start"):
            backend.apply(broken, "create", None, docker_env.resolve)
        assert docker_env.count(obj.name) == 0  # removed again: a failure is never observed as a sleeping agent
    finally:
        docker_env.api.remove_image(image["Id"], force=True)


def test_wrong_object_and_bad_specs_are_permanent(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("otto")
    with pytest.raises(PermanentError, match="unknown action"):
        backend.apply(obj, "delete", None, docker_env.resolve)
    bad_state = ManagedObject(obj.provider, obj.type, obj.name, {**obj.spec, "state": "Asleep"}, obj.owner)
    with pytest.raises(PermanentError, match="state 'Asleep'"):
        backend.apply(bad_state, "create", None, docker_env.resolve)
    from gitops.objects import Provider

    room = ManagedObject(Provider.MATRIX, "room", "r", {}, "org")
    with pytest.raises(PermanentError, match="not a container"):
        backend.apply(room, "create", None, docker_env.resolve)
    assert docker_env.count(obj.name) == 0


# Secrets -------------------------------------------------------------------------------------------------


def test_secret_values_never_reach_observations_labels_or_errors(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("pete")
    backend.apply(obj, "create", None, docker_env.resolve)
    observed = backend.observe(Scope({}))
    assert SECRET not in canonical_json({k: [o.spec, o.recorded_hash] for k, o in observed.items()})
    assert observed[obj.key].spec["env"]["HICLAW_WORKER_MATRIX_TOKEN"] == "secret://agent/pete/matrix-token"
    labels = docker_env.inspect(obj)["Config"]["Labels"]
    assert SECRET not in json.dumps(labels)

    # An engine that echoes the environment in its error (it does, for an invalid variable name).
    bad = docker_env.desired("pete-bad", extra_env={"": "secret://agent/pete-bad/leak"})
    with pytest.raises(PermanentError) as raised:
        backend.apply(bad, "create", None, docker_env.resolve)
    assert "invalid environment variable" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_foreign_container_under_our_name_is_refused(docker_env: DockerEnv, backend: DockerBackend) -> None:
    obj = docker_env.desired("quinn")
    docker_env.api.create_container(docker_env.images["openclaw"], name=obj.name,
                                    labels={"hiclaw.io/test-session": obj.spec["labels"]["hiclaw.io/test-session"]})
    with pytest.raises(PermanentError, match=r"not managed by this reconciler \(hiclaw.io/managed-by=\(unset\)"):
        backend.apply(obj, "create", None, docker_env.resolve)
    assert backend.delete(obj) is Outcome.UNCHANGED
    assert docker_env.count(obj.name) == 1
    other = DockerBackend(docker_env.settings(instance="another-instance"))
    try:
        assert obj.key not in other.observe(Scope({}))
    finally:
        other.close()
    assert LABEL_MANAGED_BY not in docker_env.inspect(obj)["Config"]["Labels"]


# Classification (no engine needed) -----------------------------------------------------------------------


def api_error(status: int, explanation: str, headers: dict[str, str] | None = None) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return docker.errors.APIError("error", response=response, explanation=explanation)


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (api_error(409, "Conflict. The container name is already in use"), TransientError, "conflict"),
        (api_error(500, "containerd: timeout"), TransientError, "failed (500)"),
        (api_error(503, "busy"), TransientError, "failed (503)"),
        (api_error(429, "slow down", {"Retry-After": "7"}), TransientError, "rate-limited"),
        (api_error(404, "No such container: x"), TransientError, "vanished"),
        (api_error(400, "invalid reference format"), PermanentError, "refused"),
        (api_error(500, "driver failed: Bind for 127.0.0.1:18888 failed: port is already allocated"),
         PermanentError, "free the port"),
        (api_error(500, 'OCI runtime create failed: exec: "/x": executable file not found'),
         PermanentError, "cannot start"),
        (docker.errors.ImageNotFound("No such image: a:b"), PermanentError, "never pulled"),
        (requests.exceptions.ConnectionError("refused"), TransientError, "unreachable"),
        (requests.exceptions.ReadTimeout("read timed out"), TransientError, "unreachable"),
        (docker.errors.DockerException("Error while fetching server API version: refused"), TransientError,
         "unreachable"),
        (FileNotFoundError(2, "No such file or directory"), TransientError, "unreachable"),
        (docker.errors.InvalidArgument("bad"), PermanentError, "InvalidArgument"),
    ],
)
def test_classify(exc: BaseException, kind: type[Exception], text: str) -> None:
    error = classify(exc, "do x", "unix:///var/run/docker.sock")
    assert type(error) is kind
    assert text in str(error) and str(error).startswith("do x: ")


def test_classify_keeps_retry_after_and_scrubs_secrets() -> None:
    error = classify(api_error(429, "slow", {"Retry-After": "7"}), "list")
    assert isinstance(error, TransientError) and error.retry_after == 7.0
    leaked = classify(api_error(400, "invalid environment variable: =hunter2-secret"), "create",
                      secrets=["hunter2-secret"])
    assert "hunter2-secret" not in str(leaked) and "(redacted)" in str(leaked)
