"""Talking to the Kubernetes API: the client from in-cluster or kubeconfig configuration, raw JSON calls, and the
one place an API or transport failure becomes a TransientError or a PermanentError.

Calls go through the `kubernetes` client's typed methods with `_preload_content=False`, so answers are read as
JSON here (a fake or a newer server's extra fields never fail a pydantic model) and an answer of the wrong shape
is refused with the request named. Server-side apply is `PATCH` with `application/apply-patch+yaml`, the field
manager `hiclaw-gitops` and `force=true` (see `KubeApi.apply`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gitops.providers.protocol import ConflictError, PermanentError, TransientError

FIELD_MANAGER = "hiclaw-gitops"
_SUFFIX = {"Deployment": "deployment", "Secret": "secret", "ServiceAccount": "service_account",
           "Service": "service", "Lease": "lease"}  # kind -> the client's method suffix
TIMEOUT = (10.0, 60.0)  # connect, read (seconds) per call


class UnexpectedAnswer(PermanentError):
    """The API server answered with something its API does not describe (not JSON, or the wrong shape)."""


def _status_of(exc: Any) -> tuple[str, str]:
    """(reason, message) from a Kubernetes Status body, or the HTTP reason when the body is not one."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, Mapping):
        return str(body.get("reason") or exc.reason or ""), str(body.get("message") or exc.reason or "")
    return str(exc.reason or ""), str(exc.reason or "").strip()


def _retry_after(exc: Any) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        return float(headers.get("Retry-After", ""))
    except (TypeError, ValueError, AttributeError):
        return None


def classify(exc: BaseException, doing: str, secrets: Iterable[str] = ()) -> TransientError | PermanentError:
    """The one place a Kubernetes client or transport exception becomes retryable or not. `doing` names the
    request ("apply Deployment hiclaw/hiclaw-worker-alice"); `secrets` are scrubbed from the message."""
    import urllib3.exceptions
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    error: TransientError | PermanentError
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        reason, message = _status_of(exc)
        if status == 0:
            error = TransientError(f"{doing}: the Kubernetes API server is unreachable ({message or reason})")
        elif status == 429:
            error = TransientError(f"{doing}: rate-limited by the API server (429 {reason})", _retry_after(exc))
        elif status == 409:
            error = ConflictError(f"{doing}: conflict (409 {reason}: {message}); observe again and retry")
        elif status == 404 and "namespaces" in message:
            error = PermanentError(f"{doing}: {message} (create the namespace, or set runtime.namespace)")
        elif status == 404:
            error = TransientError(f"{doing}: not found (it vanished while this pass worked; observe again)")
        elif status in (401, 403):
            error = PermanentError(f"{doing}: refused by the API server ({status} {reason}: {message}); the "
                                   "reconciler's ServiceAccount needs the RBAC rules in deploy/kubernetes")
        elif status >= 500:
            error = TransientError(f"{doing}: the API server failed ({status} {reason}: {message})", _retry_after(exc))
        else:
            error = PermanentError(f"{doing}: refused by the API server ({status} {reason}: {message})")
    elif isinstance(exc, ConfigException):
        error = PermanentError(f"{doing}: no usable Kubernetes configuration ({exc}); run in a cluster, or set "
                               "KUBECONFIG")
    elif isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        error = TransientError(f"{doing}: the Kubernetes API server is unreachable ({type(exc).__name__}: {exc})")
    elif isinstance(exc, json.JSONDecodeError):
        error = TransientError(f"{doing}: the API server answered with malformed JSON ({exc.msg} at character "
                               f"{exc.pos}); nothing was taken")
    elif isinstance(exc, ValueError):  # the client's models refused the request before sending it
        error = PermanentError(f"{doing}: the request is not valid for the API ({exc})")
    else:
        error = PermanentError(f"{doing}: {type(exc).__name__}: {exc}")
    text = str(error)
    for value in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(value, "(redacted)")
    error.args = (text,)
    return error


def fenced() -> None:
    """Raise NotLeading when a leader election runs in this process and this process does not lead."""
    from gitops.daemon.leader import NotLeading, may_write

    if not may_write():
        raise NotLeading("this replica does not hold the leader lease (any more): the write was not made")


def load_client(config_file: str = "", context: str = "") -> Any:
    """An `ApiClient` of its own (never the module-wide default): in-cluster when the pod's service account is
    mounted, else the kubeconfig (`config_file`, else KUBECONFIG, else ~/.kube/config)."""
    import urllib3.util
    from kubernetes import client, config

    cfg = client.Configuration()
    if not config_file and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        # The client reads KUBECONFIG once, at import; read it now (it may be set after the import).
        path = config_file or os.environ.get("KUBECONFIG", "") or os.path.expanduser("~/.kube/config")
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context or None, client_configuration=cfg)
    # One reconnect, nothing else: the executor retries with backoff and honours Retry-After itself, and a
    # client that sleeps on a 429 inside a call hides the failure from it.
    cfg.retries = urllib3.util.Retry(total=1, connect=1, read=0, status=0, redirect=0,
                                     respect_retry_after_header=False)
    return client.ApiClient(cfg)


class KubeApi:
    """The calls the backends and the leader election make, each returning the decoded JSON object, each
    failure classified with the request named. Thread-safe: the client is built once, lazily."""

    def __init__(self, api_client: Any = None, config_file: str = "") -> None:
        self._client = api_client
        self._owns = api_client is None
        self._config_file = config_file
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = load_client(self._config_file)
                except Exception as exc:
                    raise classify(exc, "connect to Kubernetes") from None
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._owns:
            client.close()

    def _api(self, kind: str) -> Any:
        from kubernetes import client

        api_client = self.client()
        if kind == "Deployment":
            return client.AppsV1Api(api_client)
        if kind == "Lease":
            return client.CoordinationV1Api(api_client)
        return client.CoreV1Api(api_client)

    def call(self, doing: str, fn: Callable[[Any], Any], kind: str, secrets: Iterable[str] = (),
             write: bool = False) -> dict[str, Any]:
        """Run `fn(api)` with `_preload_content=False` semantics; the answer decoded as a JSON object. A write
        (other than the lease's own) is refused when a leader election says this process does not lead."""
        if write and kind != "Lease":
            fenced()
        try:
            response = fn(self._api(kind))
            raw = response.data if hasattr(response, "data") else response.read()
            body = json.loads(raw or b"{}")
        except (TransientError, PermanentError):
            raise
        except Exception as exc:
            raise classify(exc, doing, secrets) from None
        if not isinstance(body, dict):
            raise UnexpectedAnswer(f"{doing}: the API server answered with {type(body).__name__}, not an object")
        return body

    # Generic verbs by kind -------------------------------------------------------------------------------

    def _method(self, api: Any, verb: str, kind: str) -> Any:
        return getattr(api, f"{verb}_namespaced_{_SUFFIX[kind]}")

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        doing = f"list {kind}s in {namespace} ({selector})"
        body = self.call(doing, lambda api: self._method(api, "list", kind)(
            namespace, label_selector=selector, _preload_content=False, _request_timeout=TIMEOUT), kind)
        items = body.get("items")
        if items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("metadata"), dict)
                                                  for i in items):
            raise UnexpectedAnswer(f"{doing}: the API server's `items` is not a list of objects with metadata")
        return items

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none (404)."""
        from kubernetes.client.exceptions import ApiException

        doing = f"get {kind} {namespace}/{name}"
        try:
            response = self._method(self._api(kind), "read", kind)(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404 and "namespaces" not in _status_of(exc)[1]:
                return None
            raise classify(exc, doing) from None
        except (TransientError, PermanentError):
            raise
        except Exception as exc:
            raise classify(exc, doing) from None
        return self.call(doing, lambda _: response, kind)

    def apply(self, body: Mapping[str, Any], namespace: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
        """Server-side apply as `hiclaw-gitops`, forcing: the reconciler owns what it declares on its own objects
        (ownership is checked by label before anything is applied)."""
        kind, name = str(body["kind"]), str(body["metadata"]["name"])
        doing = f"apply {kind} {namespace}/{name}"
        return self.call(doing, lambda api: self._method(api, "patch", kind)(
            name, namespace, dict(body), field_manager=FIELD_MANAGER, force=True,
            _content_type="application/apply-patch+yaml", _preload_content=False, _request_timeout=TIMEOUT),
            kind, secrets, write=True)

    def create(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        kind, name = str(body["kind"]), str(body["metadata"]["name"])
        return self.call(f"create {kind} {namespace}/{name}", lambda api: self._method(api, "create", kind)(
            namespace, dict(body), field_manager=FIELD_MANAGER, _preload_content=False, _request_timeout=TIMEOUT),
            kind, write=True)

    def replace(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        kind, name = str(body["kind"]), str(body["metadata"]["name"])
        return self.call(f"replace {kind} {namespace}/{name}", lambda api: self._method(api, "replace", kind)(
            name, namespace, dict(body), field_manager=FIELD_MANAGER, _preload_content=False,
            _request_timeout=TIMEOUT), kind, write=True)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete the object; False when it was already gone."""
        from kubernetes.client.exceptions import ApiException

        doing = f"delete {kind} {namespace}/{name}"
        if kind != "Lease":
            fenced()
        try:
            self._method(self._api(kind), "delete", kind)(
                name, namespace, propagation_policy="Foreground" if kind == "Deployment" else None,
                _preload_content=False, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404 and "namespaces" not in _status_of(exc)[1]:
                return False
            raise classify(exc, doing) from None
        except (TransientError, PermanentError):
            raise
        except Exception as exc:
            raise classify(exc, doing) from None
        return True
