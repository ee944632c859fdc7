"""Apply benchmark (SPEC §10): throughput against backends with fixed latency, and the cost of a no-op pass.

    python -m bench.apply_bench [--scale 30] [--latency 0.02] [--concurrency 1,4,8,16] [--json FILE]

A synthetic org (`bench.generate`, default 30 team workers: a few hundred managed objects over the four
providers, with the compiler's real dependencies) is reconciled from nothing into in-memory backends that
sleep `latency` seconds on every call (list or write), once per concurrency level (changes in flight per
provider). Reported per level: the apply run's wall time (execution and verification; observation and
planning excluded, they are the same at every level), changes per second, and the speed-up over
concurrency 1. Then a second pass with no new commit is made at the highest level and its backend calls
are counted: the target is zero writes and one list call per provider object type.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backends.memory import MemoryBackend
from bench.generate import generate
from gitops.apply.executor import ApplyOptions
from gitops.apply.secrets import SecretStore
from gitops.apply.state import StateStore
from gitops.objects import Provider
from gitops.pipeline import reconcile
from gitops.providers.protocol import Backend
from gitops.settings.model import Settings
from gitops.source.files import DirectorySource

TARGET_SPEEDUP_AT_8 = 6.0


def one_level(org: Path, concurrency: int, latency: float, settings: Settings) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="apply-bench-") as tmp:
        store, secrets = StateStore(tmp), SecretStore(tmp)
        memory = {p: MemoryBackend(p, latency=latency) for p in Provider}
        backends: dict[Provider, Backend] = dict(memory)
        options = ApplyOptions.from_settings(settings, concurrency=concurrency)
        started = time.perf_counter()
        first = reconcile(DirectorySource(org), settings, store=store, secrets=secrets, backends=backends,
                          options=options)
        wall = time.perf_counter() - started
        run = first.run
        if run is None or not run.ok:
            raise SystemExit(f"apply failed at concurrency {concurrency}: {first.to_dict()}")
        changes = sum(n for status, n in run.counts().items() if status != "unchanged")
        peak = {p.value: b.max_in_flight for p, b in memory.items()}
        for b in memory.values():
            b.reset_counters()
        second = reconcile(DirectorySource(org), settings, store=store, secrets=secrets, backends=backends,
                           options=options)
        noop = {
            p.value: {"writes": b.write_calls, "lists": b.list_calls,
                      "types": len({k.split("/", 2)[1] for k in b.ours()})}
            for p, b in memory.items()
        }
        store.close()
        secrets.close()
    assert second.plan is not None
    return {
        "concurrency": concurrency,
        "objects": changes,
        "apply_seconds": round(run.duration, 3),
        "pass_seconds": round(wall, 3),
        "changes_per_second": round(changes / run.duration, 1),
        "peak_in_flight": peak,
        "noop_second_pass": {"changes": second.plan.has_changes, "calls": noop},
    }


def machine() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def table(results: list[dict[str, Any]]) -> str:
    base = results[0]["apply_seconds"]
    lines = ["concurrency  objects  apply s  changes/s  speed-up", "-----------  -------  -------  ---------  --------"]
    for r in results:
        lines.append(f"{r['concurrency']:>11}  {r['objects']:>7}  {r['apply_seconds']:>7.2f}  "
                     f"{r['changes_per_second']:>9.1f}  {base / r['apply_seconds']:>7.1f}×")
    return "\n".join(lines)


def noop_table(result: dict[str, Any]) -> str:
    lines = ["provider  writes  list calls  object types", "--------  ------  ----------  ------------"]
    for provider, c in result["noop_second_pass"]["calls"].items():
        lines.append(f"{provider:<8}  {c['writes']:>6}  {c['lists']:>10}  {c['types']:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=30, help="team workers of the synthetic org (default: 30)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per backend call (default: 0.02)")
    parser.add_argument("--concurrency", default="1,4,8,16", help="levels to measure, comma-separated")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    settings = Settings().with_all_providers()
    with tempfile.TemporaryDirectory(prefix="apply-bench-org-") as tmp:
        org = Path(tmp)
        counts = generate(args.scale, org)
        results = []
        for level in levels:
            print(f"concurrency {level} ...", file=sys.stderr)
            results.append(one_level(org, level, args.latency, settings))
    print(f"Synthetic org: {counts}; backend latency {args.latency * 1000:g} ms per call\n")
    print(table(results))
    print("\nNo-op second pass (concurrency " + str(results[-1]["concurrency"]) + "):")
    print(noop_table(results[-1]))
    by_level = {r["concurrency"]: r for r in results}
    speedup = by_level[1]["apply_seconds"] / by_level[8]["apply_seconds"] if 1 in by_level and 8 in by_level else None
    if speedup is not None:
        verdict = "meets" if speedup >= TARGET_SPEEDUP_AT_8 else "MISSES"
        print(f"\nSpeed-up at concurrency 8: {speedup:.1f}× ({verdict} the ≥ {TARGET_SPEEDUP_AT_8:g}× target)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "org": counts, "latency": args.latency,
                                         "results": results, "speedup_at_8": speedup}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
