"""Gateway provisioning measured on the contract fake (not a test; run by hand):

    .venv/bin/python -m tests.gateway.bench_gateway

`example-org` and `bench/generate.py` at 100 team workers, the gateway provider alone, with two AI routes
(one per model family plus a catch-all) and the GitHub MCP server on the fake: a cold apply through the
executor, then a second pass. Requests are the fake's own count (every attempt). The fake answers in
microseconds, so the seconds are this reconciler's own cost, not a console's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from backends.gateway import GatewayBackend
from bench.generate import generate
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.compile import compile_org
from gitops.objects import Provider
from gitops.pipeline import read_org
from gitops.providers.conformance import assert_ok, pending, plan_live, run_plan
from gitops.providers.protocol import BackendContext
from gitops.settings.model import GatewaySettings, Route, Settings
from gitops.source.files import DirectorySource

from .fake_higress import FakeHigress

ROOT = Path(__file__).resolve().parents[2]
ROUTES = (Route("default-ai-route"), Route("qwen", ("qwen3.6-plus",)), Route("claude", ("claude-sonnet-4-6",)))


def measure(label: str, org_dir: Path, work: Path) -> None:
    fake = FakeHigress().start()
    try:
        for route in ROUTES:
            fake.data["ai_routes"][route.name] = {"name": route.name, "version": "1", "authConfig": {
                "enabled": True, "allowedCredentialTypes": ["key-auth"], "allowedConsumers": []}}
        fake.data["mcp_servers"]["github"] = {"name": "github", "consumerAuthInfo": {"allowedConsumers": []}}
        pw = work / f"{label}-pw"
        pw.write_text(fake.password)
        gateway = GatewaySettings(console_url=fake.url, password_file=str(pw), routes=ROUTES)
        head = read_org(DirectorySource(org_dir))
        assert head.ok
        objs = list(compile_org(head.validation.org, Settings(gateway=gateway)).objects.values())
        objs = [o for o in objs if o.provider is Provider.GATEWAY]
        state, secrets = StateStore(work / label), SecretStore(work / label, key="")
        backend = GatewayBackend(BackendContext(settings=gateway, secrets=secrets))
        try:
            for n, what in enumerate(("cold apply", "second pass")):
                before = len(fake.requests), fake.writes()
                started = time.perf_counter()
                plan, creds, live = plan_live(backend, state, secrets, objs)
                run = run_plan(plan, creds, live, backend, state, secrets, concurrency=gateway.concurrency)
                seconds = time.perf_counter() - started
                assert_ok(run)
                assert n == 0 or pending(plan) == []
                requests, writes = len(fake.requests) - before[0], fake.writes() - before[1]
                print(f"{label}: {what}: {len(objs)} objects, {seconds:.2f} s, {requests - writes} reads / "
                      f"{writes} writes ({requests / len(objs):.2f} requests per object)")
        finally:
            backend.close()
            secrets.close()
            state.close()
    finally:
        fake.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        measure("example-org", ROOT / "example-org", work)
        generate(100, work / "org-100")
        measure("synthetic-100", work / "org-100", work)


if __name__ == "__main__":
    main()
