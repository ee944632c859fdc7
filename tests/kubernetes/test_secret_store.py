"""The secret store in Kubernetes Secrets: the file store's surface, shared by replicas, a drop-in for the
executor, values never shown, writes fenced by leader election."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubeharness import KubeEnv

from backends.kubernetes_secrets import KubeSecretStore
from gitops.apply.secrets import SecretMissing
from gitops.apply.state import StateStore
from gitops.daemon.leader import NotLeading
from gitops.providers.conformance import assert_ok, leaked, pending, plan_live, run_plan, seed_secrets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stores(kube_env: KubeEnv) -> Iterator[tuple[KubeSecretStore, KubeSecretStore, Clock]]:
    clock = Clock()
    a = KubeSecretStore(kube_env.namespace, kube_env.instance, monotonic=clock)
    b = KubeSecretStore(kube_env.namespace, kube_env.instance, monotonic=clock)
    yield a, b, clock
    for name in a.names():
        a.delete(name)
    a.close()
    b.close()


def test_put_get_delete_and_shared_between_replicas(
    stores: tuple[KubeSecretStore, KubeSecretStore, Clock]
) -> None:
    a, b, clock = stores
    assert a.peek("matrix/alice/token") is None and b.names() == []
    a.put("matrix/alice/token", "tok-" + "a" * 20)
    generated = a.get_or_create("matrix/alice/password")
    assert a.get("matrix/alice/password") == generated and a.get_or_create("matrix/alice/password") == generated
    clock.now += 5  # b's list is older than max_age: it lists again
    assert b.names() == ["matrix/alice/password", "matrix/alice/token"]
    same = b.get("matrix/alice/password") == generated
    assert same, "another replica does not read the generated value"
    a.delete("matrix/alice/token")
    clock.now += 5
    with pytest.raises(SecretMissing, match="matrix/alice/token"):
        b.get("matrix/alice/token")
    with pytest.raises(SecretMissing, match="not generated"):
        a.get_or_create("matrix/bob/token")
    assert generated not in repr(a) and "password" not in repr(a)


def test_reads_cost_one_list_per_max_age(kube_env: KubeEnv, stores: tuple[KubeSecretStore, KubeSecretStore, Clock]
                                         ) -> None:
    a, _, _ = stores
    if kube_env.cluster is None:
        pytest.skip("counting calls needs the fake API server")
    for i in range(5):
        a.put(f"gateway/w{i}/key", f"key-value-{i:04d}")
    before = len(kube_env.cluster.calls)
    for _ in range(3):
        for i in range(5):
            a.peek(f"gateway/w{i}/key")
    assert len(kube_env.cluster.calls) - before <= 1


def test_a_drop_in_for_the_executor(kube_env: KubeEnv, tmp_path: Path,
                                    stores: tuple[KubeSecretStore, KubeSecretStore, Clock]) -> None:
    store, _, _ = stores
    backend = kube_env.backend()
    state = StateStore(tmp_path / "state")
    try:
        obj = kube_env.desired("kss", state="Running")
        seed_secrets(store, [obj], kube_env.resolve)
        plan, creds, live = plan_live(backend, state, store, [obj])
        run = run_plan(plan, creds, live, backend, state, store)
        assert_ok(run)
        assert pending(plan_live(backend, state, store, [obj])[0]) == []
        values = [store.get(n) for n in store.names()]
        assert values and not leaked(values, plan.to_dict(), run.to_dict(), json.dumps(state.inventory()[obj.key]
                                                                                        .to_dict()))
    finally:
        backend.close()
        state.close()


def test_a_replica_that_does_not_lead_cannot_write(
    stores: tuple[KubeSecretStore, KubeSecretStore, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, _ = stores
    import gitops.daemon.leader as leader

    monkeypatch.setattr(leader, "_fence", lambda: False)
    with pytest.raises(NotLeading):
        a.put("gateway/x/key", "some-key-value")
    monkeypatch.setattr(leader, "_fence", None)
    assert a.peek("gateway/x/key") is None
