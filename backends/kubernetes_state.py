"""State snapshots in Kubernetes Secrets (the `gitops.daemon.replica.SnapshotStore` protocol): how replicas that
share no disk hand the reconciler's state to each other.

A snapshot (one compressed blob) is split into chunks of at most `CHUNK` bytes, one Secret each, named
`<instance>-state-<generation>-<index>` in the reconciler's namespace, labelled `hiclaw.io/managed-by=<instance>`,
`hiclaw.io/state-snapshot=true` and `hiclaw.io/state-generation=<n>`, annotated with the blob's digest, the
number of chunks and the chunk's index. A Secret holds at most 1 MiB; 700 KiB of data (about 930 KiB in
base64 on the wire) leaves room for the rest of the object.

A generation is complete when every chunk 0..n-1 is there with the same digest and the chunks put together
match it. `save` writes every chunk of the new generation first (server-side apply, fenced like every write
of this process), then deletes the chunks of older generations — so a write cut half-way (a crash, a lost
lease) leaves the previous generation whole, and its own chunks are removed by the next complete save.
`load` is one label-selector list; the Secrets hold no credential (see gitops.daemon.replica).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from backends.kubernetes_api import KubeApi
from backends.kubernetes_objects import LABEL_MANAGED_BY, LABEL_STATE_SNAPSHOT
from gitops.daemon.leader import NotLeading
from gitops.daemon.replica import Loaded, Snapshot

log = logging.getLogger("hiclaw_gitops.replica")

LABEL_SNAPSHOT = LABEL_STATE_SNAPSHOT
LABEL_GENERATION = "hiclaw.io/state-generation"
ANN_DIGEST = "hiclaw.io/state-digest"
ANN_CHUNKS = "hiclaw.io/state-chunks"
ANN_CHUNK = "hiclaw.io/state-chunk"
CHUNK = 700 * 1024


class KubeStateSnapshots:
    """Generations of the state snapshot in Secrets of `namespace`, for reconciler instance `instance`."""

    def __init__(self, namespace: str, instance: str = "hiclaw-gitops", api: KubeApi | None = None,
                 chunk: int = CHUNK) -> None:
        self.namespace, self.instance = namespace, instance
        self.api = api or KubeApi()
        self.chunk = chunk
        self._known: dict[str, int] = {}  # chunk Secret name -> generation, as last listed or written

    @property
    def selector(self) -> str:
        return f"{LABEL_MANAGED_BY}={self.instance},{LABEL_SNAPSHOT}=true"

    def __repr__(self) -> str:
        return f"KubeStateSnapshots(namespace={self.namespace!r}, instance={self.instance!r})"

    def name(self, generation: int, index: int) -> str:
        return f"{self.instance}-state-{generation}-{index}"

    def close(self) -> None:
        self.api.close()

    # Reading -----------------------------------------------------------------------------------------

    def load(self) -> Loaded:
        items = self.api.list("Secret", self.namespace, self.selector)
        chunks: dict[int, list[tuple[int, int, str, bytes | None]]] = {}  # generation -> (index, of, digest, data)
        self._known = {}
        for item in items:
            meta = item.get("metadata") or {}
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            try:
                generation = int(labels.get(LABEL_GENERATION, ""))
                index, of = int(annotations.get(ANN_CHUNK, "")), int(annotations.get(ANN_CHUNKS, ""))
            except (TypeError, ValueError):
                continue  # not one of ours as we write them: never read, never deleted
            self._known[str(meta.get("name") or "")] = generation
            chunks.setdefault(generation, []).append((index, of, str(annotations.get(ANN_DIGEST, "")),
                                                      _data(item)))
        highest = max(chunks, default=0)
        for generation in sorted(chunks, reverse=True):
            blob, digest, why = _assemble(chunks[generation])
            if blob is not None:
                return Loaded(Snapshot(generation, digest, blob), highest)
            log.warning("state generation %d is not usable (%s); an older one is tried", generation, why)
        return Loaded(None, highest)

    # Writing -----------------------------------------------------------------------------------------

    def save(self, generation: int, blob: bytes, digest: str, guard: Callable[[], bool]) -> None:
        parts = [blob[i:i + self.chunk] for i in range(0, len(blob), self.chunk)] or [b""]
        for index, part in enumerate(parts):
            if not guard():
                raise NotLeading("this replica no longer leads: the state snapshot was not completed")
            name = self.name(generation, index)
            self.api.apply(self._body(name, generation, index, len(parts), digest, part), self.namespace)
            self._known[name] = generation
        for name, older in sorted(self._known.items()):  # the new generation is whole: the rest can go
            if older != generation:
                if not guard():
                    raise NotLeading("this replica no longer leads: older state snapshots were left in place")
                self.api.delete("Secret", self.namespace, name)
                del self._known[name]

    def _body(self, name: str, generation: int, index: int, of: int, digest: str, data: bytes) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {
                "name": name, "namespace": self.namespace,
                "labels": {LABEL_MANAGED_BY: self.instance, LABEL_SNAPSHOT: "true",
                           LABEL_GENERATION: str(generation)},
                "annotations": {ANN_DIGEST: digest, ANN_CHUNKS: str(of), ANN_CHUNK: str(index)},
            },
            "data": {"chunk": base64.b64encode(data).decode()},
        }


def _data(item: dict[str, Any]) -> bytes | None:
    data = item.get("data")
    encoded = data.get("chunk") if isinstance(data, dict) else None
    if encoded is None:
        return b"" if isinstance(data, dict) or data is None else None  # an empty chunk has no data at all
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None


def _assemble(parts: list[tuple[int, int, str, bytes | None]]) -> tuple[bytes | None, str, str]:
    """(blob, digest, '') for a complete generation, else (None, '', why not). Chunks are matched by digest: a
    stray chunk of the same number (a write from a replica that had just lost the lease) spoils nothing."""
    why = ""
    for digest in sorted({d for _, _, d, _ in parts}):
        blob, why = _whole([p for p in parts if p[2] == digest], digest)
        if blob is not None:
            return blob, digest, ""
    return None, "", why


def _whole(parts: list[tuple[int, int, str, bytes | None]], digest: str) -> tuple[bytes | None, str]:
    counts = {of for _, of, _, _ in parts}
    if len(counts) != 1:
        return None, "its chunks disagree on their number"
    of = counts.pop()
    by_index = {index: data for index, _, _, data in parts}
    if set(by_index) != set(range(of)):
        return None, f"{len(by_index)} of {of} chunks"
    if any(data is None for data in by_index.values()):
        return None, "a chunk does not decode"
    blob = b"".join(by_index[i] or b"" for i in range(of))
    if hashlib.sha256(blob).hexdigest() != digest:
        return None, "the chunks do not match the digest"
    return blob, ""
