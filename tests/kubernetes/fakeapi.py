"""A FAKE Kubernetes API server, in-process on 127.0.0.1 — not Kubernetes, and not a contract for anything else.

It implements the part of the API the Kubernetes backend and the leader election rely on, with the semantics
they depend on, so their tests can run where no kube-apiserver can (the `live` marker runs the same tests
against a real cluster from KUBECONFIG instead):

- namespaced Deployments (apps/v1), Services, ServiceAccounts, Secrets (v1) and Leases (coordination.k8s.io/v1):
  get, list, create, replace (PUT), delete, patch (server-side apply, JSON merge patch);
- server-side apply (`application/apply-patch+yaml`, `fieldManager` required, `force`): managed fields per
  manager, kept in `metadata.managedFields`; a field another manager owns with a different value is a 409
  `Conflict` unless forced (forcing takes it over); fields a manager stops applying are removed unless another
  manager owns them; an apply to a missing object creates it;
- label selectors on list (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`, comma = and);
- `resourceVersion`: one counter for the server; a PUT carrying a stale one is 409; `metadata.uid`,
  `creationTimestamp` and `generation` (bumped when `spec` changes) are the server's;
- answers 404 (missing object or namespace), 409 (exists / stale version / apply conflict), 422 (invalid name,
  missing fields, a Deployment whose selector does not match its template, a name that differs from the URL)
  and, when told to (`fail_next`), any status with a `Retry-After` header (429, 500...);
- it records every call it served (`calls`: verb, API group, resource, namespace, name, and the bearer token
  that made it, so two clients with tokens of their own can be told apart) so a test can hold the RBAC manifests
  against what was really asked;
- `hold` keeps the next matching call waiting (outside the server's lock) until the test releases it: a
  client caught with a write in flight, at a point the test chooses.

Simplifications (documented, not hidden): lists are atomic fields for ownership (a real server merges `env`,
`ports` and `containers` by key); no watch, no admission, no defaulting beyond what the tests read back;
Deployments get a status that mirrors `spec.replicas` at once.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

# resource -> (group, version, kind)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "deployments": ("apps", "v1", "Deployment"),
    "services": ("", "v1", "Service"),
    "serviceaccounts": ("", "v1", "ServiceAccount"),
    "secrets": ("", "v1", "Secret"),
    "leases": ("coordination.k8s.io", "v1", "Lease"),
}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PATH = re.compile(
    r"^/(?:api/(?P<cv>v1)|apis/(?P<group>[a-z0-9.]+)/(?P<gv>v1))/namespaces/(?P<ns>[^/]+)/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


@dataclass(frozen=True, slots=True)
class Call:
    verb: str  # get, list, create, update, patch, delete (the RBAC verbs)
    group: str
    resource: str
    namespace: str
    name: str
    user: str = ""  # the bearer token that made the call


@dataclass(slots=True)
class Hold:
    """A call held by `FakeCluster.hold`: `arrived` is set when it comes in, `release` lets it through."""

    verb: str
    resource: str
    user: str
    arrived: threading.Event
    release: threading.Event


class Status(Exception):
    def __init__(self, code: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.retry_after = code, reason, message, retry_after


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Field paths: a leaf is a tuple of keys; lists are atomic leaves (see the module doc).


def leaves(obj: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in obj.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            out.update(leaves(value, path))
        else:
            out[path] = value
    return out


def _owned_paths(obj: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """The paths an applied body claims: everything but identity and server-set metadata."""
    found = set(leaves({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}))
    return {p for p in found if p[:2] not in {("metadata", "name"), ("metadata", "namespace")}
            and not (p[0] == "metadata" and p[1] in SERVER_FIELDS)}


def _get(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return _MISSING
        cur = cur[key]
    return cur


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    cur = obj
    for key in path[:-1]:
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = cur[key] = {}
        cur = nxt
    cur[path[-1]] = copy.deepcopy(value)


def _unset(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    chain: list[dict[str, Any]] = [obj]
    for key in path[:-1]:
        nxt = chain[-1].get(key)
        if not isinstance(nxt, dict):
            return
        chain.append(nxt)
    chain[-1].pop(path[-1], None)
    for depth in range(len(chain) - 1, 0, -1):  # prune emptied parents
        if not chain[depth]:
            chain[depth - 1].pop(path[depth - 1], None)


_MISSING = object()


def _fields_v1(paths: set[tuple[str, ...]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        cur = tree
        for key in path:
            cur = cur.setdefault(f"f:{key}", {})
    return tree


def _paths_of(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for key, sub in tree.items():
        path = (*prefix, key.removeprefix("f:"))
        if isinstance(sub, Mapping) and sub:
            out |= _paths_of(sub, path)
        else:
            out.add(path)
    return out


# Label selectors


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in _split_terms(selector):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _split_terms(selector: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, ch in enumerate(selector):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            yield selector[start:i]
            start = i + 1
    yield selector[start:]


class FakeCluster:
    """The fake's state: objects by (resource, namespace, name), managed fields, recorded calls, faults."""

    def __init__(self, namespaces: tuple[str, ...] = ("hiclaw",)) -> None:
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.managers: dict[tuple[str, str, str], dict[str, set[tuple[str, ...]]]] = {}
        self.operations: dict[tuple[str, str, str], dict[str, str]] = {}  # manager -> Apply or Update
        self.calls: list[Call] = []
        self.faults: list[tuple[str, str, Status]] = []  # (verb, resource, status) served instead, once
        self.holds: list[Hold] = []
        self._version = 0
        self.lock = threading.RLock()

    # Faults and inspection ------------------------------------------------------------------------------

    def fail_next(self, verb: str, resource: str, code: int, reason: str = "", retry_after: float | None = None,
                  times: int = 1) -> None:
        """The next `times` calls of `verb` on `resource` ("*" for any) answer `code` instead."""
        status = Status(code, reason or {429: "TooManyRequests", 500: "InternalError"}.get(code, "Failure"),
                        f"injected {code}", retry_after)
        with self.lock:
            self.faults.extend((verb, resource, status) for _ in range(times))

    def hold(self, verb: str, resource: str, user: str = "") -> Hold:
        """The next `verb` on `resource` (by `user`'s token, when given) waits for `release` before it is served."""
        held = Hold(verb, resource, user, threading.Event(), threading.Event())
        with self.lock:
            self.holds.append(held)
        return held

    def _wait_if_held(self, verb: str, resource: str, user: str) -> None:
        with self.lock:
            held = next((h for h in self.holds if h.verb == verb and h.resource == resource
                         and h.user in ("", user)), None)
            if held is not None:
                self.holds.remove(held)
        if held is not None:
            held.arrived.set()
            held.release.wait(60)

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.verb in ("create", "update", "patch", "delete")]

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def names(self, resource: str, namespace: str = "hiclaw") -> list[str]:
        with self.lock:
            return sorted(n for (r, ns, n) in self.objects if r == resource and ns == namespace)

    # Serving ---------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Mapping[str, str], ctype: str, body: bytes,
               user: str = "") -> tuple[int, Any]:
        m = _PATH.match(path)
        if not m or m.group("res") not in RESOURCES:
            raise Status(404, "NotFound", f"the server could not find the requested resource ({method} {path})")
        resource, ns, name = m.group("res"), m.group("ns"), m.group("name") or ""
        group = m.group("group") or ""
        if RESOURCES[resource][0] != group:
            raise Status(404, "NotFound", f"no {resource} in API group {group!r}")
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, "")
        if not verb or (not name and verb not in ("list", "create")):
            raise Status(405, "MethodNotAllowed", f"{method} {path} is not supported")
        self._wait_if_held(verb, resource, user)
        with self.lock:
            self.calls.append(Call(verb, group, resource, ns, name, user))
            for i, (fverb, fres, status) in enumerate(self.faults):
                if fverb in (verb, "*") and fres in (resource, "*"):
                    del self.faults[i]
                    raise status
            if ns not in self.namespaces:
                raise Status(404, "NotFound", f'namespaces "{ns}" not found')
            key = (resource, ns, name)
            if verb == "get":
                return 200, self._out(key)
            if verb == "list":
                return 200, self._list(resource, ns, query.get("labelSelector", ""))
            if verb == "delete":
                if key not in self.objects:
                    raise Status(404, "NotFound", f'{resource} "{name}" not found')
                gone = self._out(key)
                del self.objects[key]
                self.managers.pop(key, None)
                self.operations.pop(key, None)
                return 200, gone
            doc = self._body(ctype, body)
            if verb == "create":
                name = str(_get(doc, ("metadata", "name")) or "")
                key = (resource, ns, name)
                self._validate(resource, ns, name, doc)
                if key in self.objects:
                    raise Status(409, "AlreadyExists", f'{resource} "{name}" already exists')
                return 201, self._store(key, doc, query.get("fieldManager") or "unknown", "Update", None)
            if not ctype.startswith("application/merge-patch+json"):  # a merge patch is checked once merged
                self._validate(resource, ns, name, doc)
            if verb == "update":
                if key not in self.objects:
                    raise Status(404, "NotFound", f'{resource} "{name}" not found')
                sent = _get(doc, ("metadata", "resourceVersion"))
                current = self.objects[key]["metadata"]["resourceVersion"]
                if sent is not _MISSING and sent and sent != current:
                    raise Status(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": the object '
                                 "has been modified; please apply your changes to the latest version and try again")
                return 200, self._store(key, doc, query.get("fieldManager") or "unknown", "Update", None)
            if ctype.startswith("application/apply-patch"):
                return self._apply(key, doc, query)
            if ctype.startswith("application/merge-patch+json"):
                if key not in self.objects:
                    raise Status(404, "NotFound", f'{resource} "{name}" not found')
                merged = _merge(copy.deepcopy(self.objects[key]), doc)
                self._validate(resource, ns, name, merged)
                return 200, self._store(key, merged, query.get("fieldManager") or "unknown", "Update", doc)
            raise Status(415, "UnsupportedMediaType", f"the fake does not serve PATCH as {ctype}")

    def _body(self, ctype: str, body: bytes) -> dict[str, Any]:
        try:
            doc = yaml.safe_load(body) if "yaml" in ctype else json.loads(body)
        except (ValueError, yaml.YAMLError) as exc:
            raise Status(400, "BadRequest", f"the body cannot be decoded: {exc}") from None
        if not isinstance(doc, dict):
            raise Status(400, "BadRequest", "the body is not an object")
        return doc

    def _validate(self, resource: str, ns: str, name: str, doc: Mapping[str, Any]) -> None:
        group, version, kind = RESOURCES[resource]
        problems = []
        api_version = f"{group}/{version}" if group else version
        if doc.get("kind", kind) != kind or doc.get("apiVersion", api_version) != api_version:
            problems.append(f"kind/apiVersion {doc.get('kind')}/{doc.get('apiVersion')} is not {kind}/{api_version}")
        body_name = _get(doc, ("metadata", "name"))
        if body_name is _MISSING or not body_name:
            problems.append("metadata.name: Required value")
        elif body_name != name:
            problems.append(f"metadata.name: Invalid value: {body_name!r}: does not match the name in the URL")
        elif not _NAME.match(str(name)) or len(str(name)) > 253:
            problems.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist "
                            "of lower case alphanumeric characters, '-' or '.'")
        body_ns = _get(doc, ("metadata", "namespace"))
        if body_ns is not _MISSING and body_ns and body_ns != ns:
            problems.append("metadata.namespace: does not match the namespace of the request")
        if resource == "deployments":
            selector = _get(doc, ("spec", "selector", "matchLabels"))
            labels = _get(doc, ("spec", "template", "metadata", "labels"))
            if not isinstance(selector, Mapping) or not selector:
                problems.append("spec.selector: Required value")
            elif not isinstance(labels, Mapping) or any(labels.get(k) != v for k, v in selector.items()):
                problems.append("spec.template.metadata.labels: Invalid value: `selector` does not match template "
                                "`labels`")
            containers = _get(doc, ("spec", "template", "spec", "containers"))
            if not isinstance(containers, list) or not containers:
                problems.append("spec.template.spec.containers: Required value")
            replicas = _get(doc, ("spec", "replicas"))
            if replicas is not _MISSING and (not isinstance(replicas, int) or replicas < 0):
                problems.append("spec.replicas: Invalid value: must be greater than or equal to 0")
        if resource == "secrets":
            for field in ("data", "stringData"):
                values = doc.get(field)
                if values is not None and (not isinstance(values, Mapping)
                                           or not all(isinstance(v, str) for v in values.values())):
                    problems.append(f"{field}: Invalid value: must be a map of strings")
        if problems:
            raise Status(422, "Invalid", f'{kind} "{name}" is invalid: ' + "; ".join(problems))

    def _apply(self, key: tuple[str, str, str], doc: dict[str, Any], query: Mapping[str, str]) -> tuple[int, Any]:
        manager = query.get("fieldManager", "")
        if not manager:
            raise Status(422, "Invalid", "PATCH with apply-patch requires a fieldManager")
        force = query.get("force", "false") == "true"
        claimed = _owned_paths(doc)
        new_values = leaves(doc)
        if key not in self.objects:
            return 201, self._store(key, doc, manager, "Apply", None, claimed)
        current = copy.deepcopy(self.objects[key])
        owners = self.managers.setdefault(key, {})
        conflicts = []
        for other, paths in owners.items():
            if other == manager:
                continue
            for path in paths & claimed:
                if _get(current, path) != new_values.get(path, _MISSING):
                    conflicts.append((other, path))
        if conflicts and not force:
            text = "; ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in sorted(conflicts))
            raise Status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {text}")
        for other, path in conflicts:  # forced: the fields change hands
            owners[other].discard(path)
        before_owners = {m: set(p) for m, p in owners.items()}
        previous = owners.get(manager, set())
        others = set().union(*(p for m, p in owners.items() if m != manager)) if owners else set()
        for path in previous - claimed - others:
            _unset(current, path)
        for path, value in new_values.items():
            if path[:1] in (("apiVersion",), ("kind",)) or path[0] == "status":
                continue
            if path[0] == "metadata" and path[1] in SERVER_FIELDS:
                continue
            _set(current, path, value)
        unchanged = _without_server_fields(current) == _without_server_fields(self.objects[key])
        if unchanged and before_owners == {**owners, manager: claimed}:
            return 200, copy.deepcopy(self.objects[key])  # a no-op apply writes nothing (no new version)
        return 200, self._store(key, current, manager, "Apply", None, claimed)

    def _store(self, key: tuple[str, str, str], doc: dict[str, Any], manager: str, operation: str,
               patch: Mapping[str, Any] | None, claimed: set[tuple[str, ...]] | None = None) -> dict[str, Any]:
        resource, ns, name = key
        group, version, kind = RESOURCES[resource]
        old = self.objects.get(key)
        obj = copy.deepcopy(doc)
        meta = obj.setdefault("metadata", {})
        self._version += 1
        meta.update(name=name, namespace=ns, resourceVersion=str(self._version))
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        else:
            for field in ("uid", "creationTimestamp", "generation"):
                meta[field] = old["metadata"][field]
            if old.get("spec") != obj.get("spec"):
                meta["generation"] = old["metadata"]["generation"] + 1
        obj["apiVersion"], obj["kind"] = (f"{group}/{version}" if group else version), kind
        owners = self.managers.setdefault(key, {})
        if claimed is None:  # an update or a merge patch: the manager takes what it changed
            changed = _owned_paths(patch) if patch is not None else {
                p for p, v in leaves(obj).items() if old is None or _get(old, p) != v} & _owned_paths(obj)
            for other in owners.values():
                other -= changed
            claimed = owners.get(manager, set()) | changed
        owners[manager] = set(claimed)
        operations = self.operations.setdefault(key, {})
        operations[manager] = operation
        for empty in [m for m, p in owners.items() if not p]:
            del owners[empty]
        meta["managedFields"] = [
            {"manager": m, "operation": operations.get(m, "Update"),
             "apiVersion": obj["apiVersion"], "time": _now(), "fieldsType": "FieldsV1",
             "fieldsV1": _fields_v1(paths)}
            for m, paths in sorted(owners.items())
        ]
        if resource == "deployments":
            replicas = (obj.get("spec") or {}).get("replicas", 1)
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": replicas,
                             "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas}
        if resource == "secrets":
            for k, v in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
            obj.setdefault("type", "Opaque")
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _out(self, key: tuple[str, str, str]) -> dict[str, Any]:
        if key not in self.objects:
            raise Status(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        return copy.deepcopy(self.objects[key])

    def _list(self, resource: str, ns: str, selector: str) -> dict[str, Any]:
        group, version, kind = RESOURCES[resource]
        items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                 if r == resource and n == ns and selector_matches(selector, o["metadata"].get("labels") or {})]
        return {"apiVersion": f"{group}/{version}" if group else version, "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(self._version)}, "items": items}


def _without_server_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    meta = out.get("metadata") or {}
    for field in ("resourceVersion", "managedFields", "generation"):
        meta.pop(field, None)
    out.pop("status", None)
    return out


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeApiServer:
    """The fake served over HTTP on 127.0.0.1 (a free port), with a kubeconfig file pointing at it."""

    def __init__(self, cluster: FakeCluster | None = None) -> None:
        self.cluster = cluster or FakeCluster()
        cluster_ = self.cluster

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                try:
                    user = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    code, payload = cluster_.handle(self.command, url.path, query,
                                                    self.headers.get("Content-Type", ""), body, user)
                except Status as st:
                    code = st.code
                    payload = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": st.message, "reason": st.reason, "code": st.code}
                    if st.retry_after is not None:
                        headers["Retry-After"] = str(int(st.retry_after))
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-apiserver", daemon=True)

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        return f"http://{host}:{port}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def kubeconfig(self, path: Path, namespace: str = "hiclaw", token: str = "fake-token") -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path
