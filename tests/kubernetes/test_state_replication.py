"""State replication through the cluster (gitops.daemon.replica on backends.kubernetes_state): snapshots in
chunked Secrets, generations written whole before older ones go, a write cut half-way leaving the previous
generation restorable, a new leader restoring before its first pass, never a credential in a snapshot, and the
secret store selected by the settings."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakeapi import FakeApiServer
from kubeharness import KubeEnv

from backends.kubernetes_state import LABEL_GENERATION, KubeStateSnapshots
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.apply.stores import open_existing_secret_store, open_secret_store
from gitops.daemon.leader import NotLeading
from gitops.daemon.loopstate import LoopState
from gitops.daemon.replica import DURABLE, StateReplica, digest_of, make_snapshot, replica_from_settings, unpack
from gitops.objects import ManagedObject, Provider
from gitops.settings.model import LeaderElectionSettings, RuntimeSettings, SecretStoreSettings, Settings


class Election:
    """A leader election reduced to what replication reads: its term."""

    def __init__(self) -> None:
        self.term = 1


@pytest.fixture
def snapshots(kube_env: KubeEnv) -> Iterator[KubeStateSnapshots]:
    store = KubeStateSnapshots(kube_env.namespace, kube_env.instance, chunk=2048)
    yield store
    for item in kube_env.raw.list("Secret", kube_env.namespace, store.selector):
        kube_env.raw.delete("Secret", kube_env.namespace, item["metadata"]["name"])
    store.close()


def _state(path: Path, agents: int, commit: str = "c1") -> None:
    """A state directory as a daemon leaves it: inventory, journal, loop.json — and a file secret store."""
    store = StateStore(path)
    try:
        for i in range(agents):
            obj = ManagedObject(Provider.RUNTIME, "container", f"hiclaw-worker-w{i}", {"image": f"img:{i}",
                                "pad": "x" * 400 + str(i)}, f"Worker/w{i}")
            store.record(obj, commit)
            store.journal("run-1", obj.key, "create", "start")
            store.journal("run-1", obj.key, "create", "done", "created")
    finally:
        store.close()
    LoopState(last_commit=commit, last_result="Reconciled", last_seen_head=commit).save(path / "loop.json")
    secrets = SecretStore(path, key="")
    secrets.get_or_create("gateway/w0/key")
    secrets.close()


def _generations(env: KubeEnv, store: KubeStateSnapshots) -> dict[int, int]:
    out: dict[int, int] = {}
    for item in env.raw.list("Secret", env.namespace, store.selector):
        generation = int(item["metadata"]["labels"][LABEL_GENERATION])
        out[generation] = out.get(generation, 0) + 1
    return out


def test_a_snapshot_holds_the_durable_files_and_never_a_credential(tmp_path: Path) -> None:
    _state(tmp_path, 3)
    (tmp_path / "git").mkdir()
    (tmp_path / "parse-cache.pickle").write_bytes(b"cache")
    blob = make_snapshot(tmp_path)
    files = unpack(blob)
    assert set(files) == {"state.db", "loop.json"} and set(files) <= set(DURABLE)
    assert digest_of(make_snapshot(tmp_path)) == digest_of(blob), "the same state packs to other bytes"
    secret = SecretStore(tmp_path, key="")
    try:
        value = secret.get("gateway/w0/key")
        assert value.encode() not in blob and all(value.encode() not in data for data in files.values())
    finally:
        secret.close()


def test_restore_on_another_replica_brings_the_inventory_and_the_loop_state(
    kube_env: KubeEnv, snapshots: KubeStateSnapshots, tmp_path: Path
) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    _state(a_dir, 12)  # several chunks of 2 KiB
    election_a, election_b = Election(), Election()
    a = StateReplica(a_dir, snapshots, election_a)
    assert a.prepare() and a.publish()
    assert a.local_generation() == 1 and not a.publish(), "an unchanged state was published again"
    assert _generations(kube_env, snapshots)[1] > 1, "a blob over the chunk size is not split"
    b_live = StateStore(b_dir)  # the standby's daemon has its (empty) database open all along
    restored: list[bool] = []
    b = StateReplica(b_dir, KubeStateSnapshots(kube_env.namespace, kube_env.instance, chunk=2048), election_b,
                     on_restore=lambda: restored.append(True))
    try:
        assert b.prepare() and restored == [True]
        source = StateStore(a_dir)
        try:
            assert b_live.inventory_keys() == source.inventory_keys() and len(b_live.inventory_keys()) == 12
            assert len(b_live.journal_entries()) == len(source.journal_entries())
        finally:
            source.close()
        assert LoopState.load(b_dir / "loop.json").last_commit == "c1"
        assert not (b_dir / "secrets.db").exists()
        assert b.local_generation() == 1 and b.prepare() and restored == [True], "restored twice in one term"
        # b leads on and changes the state: generation 2 replaces generation 1 (never both, never neither).
        obj = ManagedObject(Provider.RUNTIME, "container", "hiclaw-worker-new", {"image": "i"}, "Worker/new")
        b_live.record(obj, "c2")
        assert b.publish()
        assert set(_generations(kube_env, snapshots)) == {2}
        # a leads again later: a new term, and the cluster's newer state comes first.
        election_a.term += 1
        a_live = StateStore(a_dir)
        try:
            assert a.prepare() and "runtime/container/hiclaw-worker-new" in a_live.inventory_keys()
        finally:
            a_live.close()
    finally:
        b.close()
        b_live.close()


def test_a_snapshot_cut_half_way_leaves_the_previous_generation_restorable(
    fake_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = KubeEnv("hiclaw", fake_server.cluster)
    cluster = fake_server.cluster
    snapshots = KubeStateSnapshots(env.namespace, env.instance, chunk=2048)
    a_dir = tmp_path / "a"
    _state(a_dir, 12)
    a = StateReplica(a_dir, snapshots, Election())
    assert a.prepare() and a.publish()
    first = snapshots.load().newest
    assert first is not None and first.generation == 1
    store = StateStore(a_dir)
    store.record(ManagedObject(Provider.RUNTIME, "container", "hiclaw-worker-late", {"image": "i"}, "Worker/l"))
    store.close()
    original = snapshots.api.apply

    def cut_after_the_first_chunk(body: Any, namespace: str, secrets: Any = ()) -> dict[str, Any]:
        written = original(body, namespace, secrets)
        cluster.fail_next("patch", "secrets", 500, times=50)  # the API server goes away mid-snapshot
        return written

    monkeypatch.setattr(snapshots.api, "apply", cut_after_the_first_chunk)
    assert not a.publish(), "a cut snapshot counted as published"
    cluster.faults.clear()
    monkeypatch.setattr(snapshots.api, "apply", original)
    generations = _generations(env, snapshots)
    assert set(generations) == {1, 2} and generations[2] == 1, generations
    # A standby that takes over now restores generation 1, whole, and numbers its own above the cut one.
    b_dir = tmp_path / "b"
    b = StateReplica(b_dir, KubeStateSnapshots(env.namespace, env.instance, chunk=2048), Election())
    try:
        assert b.prepare() and b.local_generation() == 1
        restored = StateStore(b_dir)
        try:
            assert "runtime/container/hiclaw-worker-late" not in restored.inventory_keys()
            assert len(restored.inventory_keys()) == 12
            restored.record(ManagedObject(Provider.RUNTIME, "container", "hiclaw-worker-b", {"image": "i"}, "W/b"))
        finally:
            restored.close()
        assert b.publish() and b.local_generation() == 3
        assert set(_generations(env, snapshots)) == {3}, "the cut generation was not cleaned up"
    finally:
        b.close()
        a.close()
        env.raw.close()


def test_a_replica_whose_term_moved_on_does_not_publish(
    kube_env: KubeEnv, snapshots: KubeStateSnapshots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _state(tmp_path, 2)
    election = Election()
    a = StateReplica(tmp_path, snapshots, election)
    assert a.prepare()
    election.term += 1  # it lost the lease and took it again: someone else may have led meanwhile
    assert not a.publish() and snapshots.load().newest is None
    import gitops.daemon.leader as leader

    assert a.prepare()
    monkeypatch.setattr(leader, "_fence", lambda: False)  # this replica does not lead
    assert not a.publish() and snapshots.load().newest is None
    with pytest.raises(NotLeading):
        snapshots.save(9, b"blob", digest_of(b"blob"), guard=lambda: True)


def test_an_unreadable_cluster_keeps_the_new_leader_from_passing(
    fake_server: FakeApiServer, tmp_path: Path
) -> None:
    fake_server.cluster.fail_next("list", "secrets", 503, times=3)
    replica = StateReplica(tmp_path, KubeStateSnapshots("hiclaw", "hiclaw-gitops"), Election())
    try:
        assert not replica.prepare(), "a leader passed without knowing the cluster's state"
        fake_server.cluster.faults.clear()
        assert replica.prepare()
    finally:
        replica.close()


def test_replication_and_the_secret_store_from_settings(fake_server: FakeApiServer, tmp_path: Path) -> None:
    runtime = RuntimeSettings(backend="kubernetes", namespace="hiclaw", instance="inst")
    on = LeaderElectionSettings(enabled=True, replicate_state=True)
    plain = Settings(state_dir=str(tmp_path / "s"), runtime=runtime, leader_election=on)
    with pytest.raises(ValueError, match=r"secret_store\.backend: kubernetes"):
        replica_from_settings(plain, Election())
    shared = Settings(state_dir=str(tmp_path / "s"), runtime=runtime, leader_election=on,
                      secret_store=SecretStoreSettings(backend="kubernetes"))
    with pytest.raises(ValueError, match=r"leader_election\.enabled"):
        replica_from_settings(Settings(state_dir=str(tmp_path / "s"), runtime=runtime, secret_store=shared.secret_store,
                                       leader_election=LeaderElectionSettings(replicate_state=True)), None)
    replica = replica_from_settings(shared, Election())
    assert replica is not None and isinstance(replica.snapshots, KubeStateSnapshots)
    assert (replica.snapshots.namespace, replica.snapshots.instance) == ("hiclaw", "inst")
    replica.close()
    assert replica_from_settings(Settings(), None) is None
    # The secret store: the file by default, Kubernetes Secrets when selected — every opener the same way.
    assert open_existing_secret_store(Settings(state_dir=str(tmp_path / "none"))) is None
    kube = open_secret_store(shared)
    try:
        assert type(kube).__name__ == "KubeSecretStore" and kube.names() == []
        value = kube.get_or_create("gateway/alice/key")
        other = open_existing_secret_store(shared)
        assert other is not None
        same = other.get("gateway/alice/key") == value
        assert same, "a second opener does not see the same store"
        other.close()
        assert not (tmp_path / "s" / "secrets.db").exists()
    finally:
        kube.close()
    file_store = open_secret_store(Settings(state_dir=str(tmp_path / "f")))
    assert type(file_store) is SecretStore and SecretStore.exists(tmp_path / "f")
    file_store.close()


def test_secrets_command_reads_the_kubernetes_store(fake_server: FakeApiServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from gitops.cli import main

    settings = tmp_path / "settings.yaml"
    settings.write_text("state_dir: state\nruntime: {backend: kubernetes, namespace: hiclaw}\n"
                        "secret_store: {backend: kubernetes}\n")
    from backends.kubernetes_secrets import KubeSecretStore

    store = KubeSecretStore("hiclaw", "hiclaw-gitops")
    value = store.get_or_create("matrix/alice/password")
    store.close()
    assert main(["secrets", "list", "--settings", str(settings)]) == 0
    out = capsys.readouterr().out
    assert out.split() == ["matrix/alice/password"] and value not in out
    assert main(["secrets", "get", "matrix/bob/password", "--settings", str(settings)]) == 1
    assert "matrix/bob/password" in capsys.readouterr().err
    fake_server.cluster.fail_next("list", "secrets", 403)
    assert main(["secrets", "list", "--settings", str(settings)]) == 1
    err = capsys.readouterr().err
    assert "Kubernetes secret store" in err and "Traceback" not in err


def test_snapshot_bytes_are_a_plain_tar_gz(tmp_path: Path) -> None:
    """An operator can read a generation back by hand (kubectl get, base64 -d, cat the chunks, tar xz)."""
    import gzip

    _state(tmp_path, 1)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(make_snapshot(tmp_path)))) as tar:
        names = tar.getnames()
        loop = tar.extractfile("loop.json")
        assert loop is not None and json.loads(loop.read())["last_commit"] == "c1"
    assert sorted(names) == ["loop.json", "state.db"]


def test_damaged_or_stray_chunks_never_spoil_a_generation(kube_env: KubeEnv, snapshots: KubeStateSnapshots) -> None:
    old, new = b"generation one " * 300, b"generation two " * 300
    snapshots.save(1, old, digest_of(old), guard=lambda: True)
    snapshots.save(2, new, digest_of(new), guard=lambda: True)
    # A replica that had just lost the lease lands one late chunk of its own under the same generation number.
    stray = b"late"
    kube_env.raw.apply(snapshots._body(snapshots.name(2, 5), 2, 5, 6, digest_of(stray), stray), kube_env.namespace)
    loaded = snapshots.load()
    assert loaded.newest is not None and loaded.newest.blob == new and loaded.highest == 2
    # A chunk whose bytes no longer match the digest: that generation is skipped, an older whole one is not
    # there any more (removed after generation 2 was complete), so nothing is restored rather than garbage.
    body = snapshots._body(snapshots.name(2, 0), 2, 0, len(range(0, len(new), snapshots.chunk)), digest_of(new),
                           b"tampered")
    kube_env.raw.apply(body, kube_env.namespace)
    assert snapshots.load().newest is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_long_pass_publishes_at_most_every_interval(
    kube_env: KubeEnv, snapshots: KubeStateSnapshots, tmp_path: Path
) -> None:
    _state(tmp_path, 1)
    clock = Clock()
    replica = StateReplica(tmp_path, snapshots, Election(), interval=30.0, monotonic=clock)
    assert replica.prepare() and replica.publish()
    store = StateStore(tmp_path)
    try:
        for i in range(3):  # the pass goes on writing; `during` is asked every tick
            store.record(ManagedObject(Provider.RUNTIME, "container", f"hiclaw-worker-x{i}", {"i": i}, "Worker/x"))
            clock.now += 10
            replica.during()
        assert replica.local_generation() == 2, "published more (or less) often than every 30 s"
        clock.now += 30
        replica.during()
        assert replica.local_generation() == 2, "published an unchanged state"
    finally:
        store.close()


def test_the_daemon_passes_only_once_the_state_is_prepared() -> None:
    import threading

    from gitops.daemon.pollers import PollOutcome
    from gitops.daemon.runner import Daemon

    answers = iter([False, False, True])
    polls: list[int] = []
    published: list[int] = []
    ready_seen: list[bool] = []

    def prepare() -> bool:
        ready_seen.append(daemon.health.snapshot()["ready"] is True)
        return next(answers, True)

    def poll() -> PollOutcome:
        polls.append(1)
        if len(polls) == 2:
            daemon.request_stop()
        return PollOutcome.UNCHANGED

    daemon = Daemon(poll, interval=0.01, jitter=0.0, prepare=prepare, after_poll=lambda: published.append(1))
    thread = threading.Thread(target=daemon.run)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert len(polls) == 2 and len(published) == 2
    assert ready_seen[:3] == [False, False, False], "ready before the state was restored"


def test_a_term_counts_acquisitions_not_renewals(kube_env: KubeEnv) -> None:
    from backends.kubernetes_api import KubeApi
    from backends.kubernetes_lease import KubeLeaseStore
    from gitops.daemon.leader import LeaderElector, Timing

    name = f"term-{kube_env.session}"
    timing = Timing(1.0, 0.6, 0.1)
    a = LeaderElector(KubeLeaseStore(name, kube_env.namespace, KubeApi()), "pod-a", timing)
    b = LeaderElector(KubeLeaseStore(name, kube_env.namespace, KubeApi()), "pod-b", timing)
    try:
        assert a.try_acquire_or_renew() and a.term == 1
        assert a.try_acquire_or_renew() and a.term == 1, "a renewal began a term"
        a.stop(release=True)
        assert b.try_acquire_or_renew() and b.term == 1
        b.stop(release=True)
        assert a.try_acquire_or_renew() and a.term == 2, "a lease taken back after someone else held it"
    finally:
        a.stop(release=False)
        b.stop(release=False)
        kube_env.raw.delete("Lease", kube_env.namespace, name)
        a.store.close()  # type: ignore[attr-defined]
        b.store.close()  # type: ignore[attr-defined]


def test_observation_never_lists_the_stores_own_secrets(kube_env: KubeEnv, snapshots: KubeStateSnapshots,
                                                       tmp_path: Path) -> None:
    """Credentials of the secret store and state chunks carry the instance's managed-by label too; the runtime
    backend's lists leave them out (a pass never downloads every credential and the whole state)."""
    from backends.kubernetes_secrets import KubeSecretStore
    from gitops.providers.conformance import secret_resolver

    backend = kube_env.backend()
    store = KubeSecretStore(kube_env.namespace, kube_env.instance)
    try:
        agent = kube_env.desired("observed", state="Running")
        backend.apply(agent, "create", None, secret_resolver())
        store.get_or_create("gateway/observed/key")
        _state(tmp_path, 1)
        replica = StateReplica(tmp_path, snapshots, Election())
        assert replica.prepare() and replica.publish()
        listed = {i["metadata"]["name"] for i in kube_env.raw.list("Secret", kube_env.namespace, backend.selector)}
        assert agent.name in listed
        assert not any(n.startswith(("hiclaw-secret-", f"{kube_env.instance}-state-")) for n in listed), listed
        assert list(backend.observe(type_scope_all(backend))) == [agent.key]
    finally:
        store.delete("gateway/observed/key")
        store.close()
        backend.close()


def type_scope_all(backend: Any) -> Any:
    from gitops.providers.conformance import type_scope

    return type_scope(backend.types)


def test_run_refuses_replication_without_a_shared_secret_store(fake_server: FakeApiServer, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from gitops.cli import main

    org = tmp_path / "org"
    org.mkdir()
    settings = tmp_path / "settings.yaml"
    settings.write_text("state_dir: state\nruntime: {backend: kubernetes, namespace: hiclaw}\n"
                        "leader_election: {enabled: true, identity: pod-a, replicate_state: true}\n")
    assert main(["run", "--once", "--watch", str(org), "--settings", str(settings)]) == 1
    err = capsys.readouterr().err
    assert "replicate_state needs secret_store.backend: kubernetes" in err and "Traceback" not in err
    assert fake_server.cluster.calls == [], "it touched the cluster before refusing"


def test_secrets_migrate_moves_the_file_store_into_kubernetes(fake_server: FakeApiServer, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from backends.kubernetes_secrets import KubeSecretStore
    from gitops.cli import main

    file_store = SecretStore(tmp_path / "state", key="")
    values = {name: file_store.get_or_create(name) for name in
              ("matrix/alice/password", "gateway/alice/key", "storage/alice/secret-key")}
    file_store.close()
    kube = KubeSecretStore("hiclaw", "hiclaw-gitops")
    kube.put("gateway/alice/key", "a-key-someone-issued-meanwhile")
    settings = tmp_path / "settings.yaml"
    settings.write_text("state_dir: state\nruntime: {backend: kubernetes, namespace: hiclaw}\n"
                        "secret_store: {backend: kubernetes}\n")
    assert main(["secrets", "migrate", "--settings", str(settings)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("2 copied, 0 already there, 1 different") and "gateway/alice/key" in err
    assert not any(v in out + err for v in values.values())
    kube.max_age = 0.0
    copied = all(kube.peek(n) == values[n] for n in ("matrix/alice/password", "storage/alice/secret-key"))
    assert copied, "a credential did not arrive unchanged"
    kube.delete("gateway/alice/key")
    assert main(["secrets", "migrate", "--settings", str(settings)]) == 0
    assert capsys.readouterr().out.startswith("1 copied, 2 already there, 0 different")
    assert kube.peek("gateway/alice/key") == values["gateway/alice/key"]
    kube.close()
    plain = tmp_path / "plain.yaml"
    plain.write_text("state_dir: state\n")
    assert main(["secrets", "migrate", "--settings", str(plain)]) == 1
    assert "secret_store.backend: kubernetes" in capsys.readouterr().err
