"""A reconciler process for the kill -9 test: one pass of an org onto a homeserver, slowed down so the test can
kill it in the middle of room setup. Usage: python reconcile_child.py CONFIG.json"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from backends.matrix import MatrixBackend
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import Provider
from gitops.pipeline import reconcile
from gitops.providers.protocol import BackendContext
from gitops.settings.model import MatrixSettings, Settings
from gitops.source.files import DirectorySource


class Slow(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            time.sleep(0.05)
        return super().handle_request(request)


def main(path: str) -> int:
    config: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    settings = Settings(state_dir=config["state_dir"], matrix=MatrixSettings(**config["matrix"]))
    assert settings.matrix is not None
    store, secrets = StateStore(settings.state_dir), SecretStore(settings.state_dir, key="")
    ctx = BackendContext(settings=settings.matrix, secrets=secrets,
                         http=lambda **kw: httpx.Client(transport=Slow(), **kw))
    result = reconcile(DirectorySource(Path(config["org"])), settings, store=store, secrets=secrets,
                       backends={Provider.MATRIX: MatrixBackend(ctx)})
    print(result.phase)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
