"""Plan benchmark (SPEC §10): libyaml parse time, cold / warm / incremental full plans and peak memory.

    python -m bench.plan_bench [--scales 100,1000,10000] [--repeat N] [--json FILE]

For each scale the synthetic org (`bench.generate`) is written to a temporary directory, and every
measurement runs in a fresh Python process, timed from inside around the measured work only (interpreter
start-up and imports excluded, the same for libyaml and for plans). Medians of N runs are reported.

- libyaml: read every YAML file and `yaml.load_all(..., Loader=yaml.CSafeLoader)` it.
- baseline: what the last apply recorded — the same org compiled once, written to a state store (inventory,
  org snapshot, access report) before any measurement. Every plan process loads it with
  `gitops.plan.baseline.from_state` *before* its timer starts, so the plans below are no-change plans except the
  incremental one.
- cold: parse + validate + compile + plan against the baseline with nothing cached (no cache files, a fresh
  process, so no in-process memo helps).
- warm: the same with the caches filled by an earlier process (parsed documents by blob id, schema-clean
  blobs, compiled units by input digest); loading the cache files is inside the timer.
- incremental: the daemon's case. One process plans the org (warm), then one team file gains a worker and
  the process plans again; the second plan is timed. Reused: the parse and compile caches in memory and the
  baseline; everything else (listing and hashing files, validation of the whole org, assembling the desired
  state, diff, summaries, access diff) runs again.
- peak memory: `ru_maxrss` of the process (baseline included; its resident size before the timer is shown too).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODES = ("libyaml", "cold", "fill", "warm", "incremental")
TARGETS = {"cold_ratio": 1.3, "warm_s": 0.5, "incremental_ms": 100.0, "peak_mb": 300.0}
NEW_WORKER = """    - name: bench-added
      model: qwen3.6-plus
      runtime: openclaw
      skills: [file-sharing]
      soul: |
        A worker the benchmark added.
"""


# Inside a measuring process ------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def yaml_files(org: Path) -> list[Path]:
    return sorted(p for p in org.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def measure_libyaml(org: Path) -> dict[str, Any]:
    import yaml

    files = yaml_files(org)
    start = time.perf_counter()
    documents = 0
    for path in files:
        documents += len(list(yaml.load_all(path.read_bytes(), Loader=yaml.CSafeLoader)))
    return {"seconds": time.perf_counter() - start, "documents": documents, "files": len(files)}


class Pipeline:
    """The engine's plan path with its caches, as a command or the daemon would run it."""

    def __init__(self, org: Path, state: Path, cache_dir: Path | None) -> None:
        from gitops import pipeline as engine  # imported here, before any timer: imports are not what is measured
        from gitops.apply.state import StateStore
        from gitops.plan import baseline as baselines
        from gitops.settings.model import Settings
        from gitops.source.files import DirectorySource

        self.engine = engine
        self.settings = Settings().with_all_providers()
        from gitops.providers.wiring import traits_for

        traits_for(self.settings)  # imports the backend classes whose traits plans read: an import, not measured
        self.source = DirectorySource(org)
        self.cache_dir = cache_dir
        self.current = baselines.from_state(StateStore(state))
        self.parse_cache: Any = None
        self.compile_cache: Any = None

    def open_caches(self) -> None:
        from gitops.compile import CompileCache
        from gitops.source.load import ParseCache

        if self.cache_dir is not None:
            self.parse_cache = ParseCache(self.cache_dir / "parse-cache.pickle")
            self.compile_cache = CompileCache(self.cache_dir / "compile-cache.pickle")

    def save_caches(self) -> None:
        if self.parse_cache is not None:
            self.parse_cache.save()
            self.compile_cache.save()

    def plan(self) -> tuple[Any, dict[str, float]]:
        engine = self.engine
        t0 = time.perf_counter()
        read = engine.read_org(self.source, self.parse_cache)
        t1 = time.perf_counter()
        desired = engine.desired_state(read, self.settings, self.compile_cache)
        t2 = time.perf_counter()
        result = engine.plan(read, self.settings, self.current, desired=desired)
        t3 = time.perf_counter()
        if not read.ok:
            raise SystemExit("the benchmark org does not validate")
        return result, {"read": t1 - t0, "compile": t2 - t1, "plan": t3 - t2, "objects": len(desired.objects)}


def measure_plan(mode: str, org: Path, state: Path, cache_dir: Path) -> dict[str, Any]:
    pipe = Pipeline(org, state, None if mode == "cold" else cache_dir)
    before = _rss_mb()
    out: dict[str, Any] = {"baseline_rss_mb": before}
    if mode == "incremental":
        pipe.open_caches()
        pipe.plan()  # the previous pass of the daemon
        team = sorted((org / "teams").iterdir())[len(list((org / "teams").iterdir())) // 2]
        original = team.read_bytes()
        team.write_bytes(original + NEW_WORKER.encode())
        try:
            start = time.perf_counter()
            result, phases = pipe.plan()
            out["seconds"] = time.perf_counter() - start
        finally:
            team.write_bytes(original)
    else:
        start = time.perf_counter()
        pipe.open_caches()
        result, phases = pipe.plan()
        out["seconds"] = time.perf_counter() - start
        if mode == "fill":
            saved = time.perf_counter()
            pipe.save_caches()
            out["save_seconds"] = time.perf_counter() - saved
    out["phases"] = phases
    out["counts"] = result.counts()
    collected = time.perf_counter()
    gc.collect()  # what the collector, paused during the plan, does afterwards: reported, not hidden
    out["gc_after_seconds"] = time.perf_counter() - collected
    out["peak_mb"] = _peak_mb()
    return out


def prepare_baseline(org: Path, state: Path) -> dict[str, Any]:
    """Record what an apply of the org would have: every object in the inventory, plus the snapshots."""
    from gitops import pipeline as engine
    from gitops.apply.state import StateStore, org_snapshot
    from gitops.plan import baseline as baselines
    from gitops.settings.model import Settings
    from gitops.source.files import DirectorySource

    read = engine.read_org(DirectorySource(org))
    desired = engine.desired_state(read, Settings().with_all_providers())
    store = StateStore(state)
    with store.transaction():
        for obj in desired.objects.values():
            store.record(obj, read.head)
        baselines.record_snapshots(store, read.head, org_snapshot(read.validation.org.resources()), desired.access)
    store.close()
    agents = sum(1 for o in desired.objects.values() if o.provider.value == "matrix" and o.spec.get("kind") == "agent")
    return {"objects": len(desired.objects), "agents": agents, "files": len(read.loaded.files)}


# The driver ----------------------------------------------------------------------------------------------


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.plan_bench", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark process {args[:2]} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _median(runs: list[dict[str, Any]], key: str = "seconds") -> float:
    return float(statistics.median(r[key] for r in runs))


def bench_scale(scale: int, repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.generate import generate

    with tempfile.TemporaryDirectory(prefix=f"plan-bench-{scale}-") as tmp:
        work = Path(tmp)
        org, state, cache = work / "org", work / "state", work / "cache"
        counts = generate(scale, org)
        log(f"[{scale}] org written: {counts}; recording the baseline")
        base = _child("--measure", "prepare", "--org", str(org), "--state", str(state))
        common = ["--org", str(org), "--state", str(state), "--cache", str(cache)]
        runs: dict[str, list[dict[str, Any]]] = {}
        for mode in ("libyaml", "cold"):
            runs[mode] = [_child("--measure", mode, *common) for _ in range(repeat)]
            log(f"[{scale}] {mode}: {_median(runs[mode]):.3f} s")
        runs["fill"] = [_child("--measure", "fill", *common)]
        for mode in ("warm", "incremental"):
            runs[mode] = [_child("--measure", mode, *common) for _ in range(repeat)]
            log(f"[{scale}] {mode}: {_median(runs[mode]):.3f} s")
    libyaml, cold = _median(runs["libyaml"]), _median(runs["cold"])
    return {
        "scale": scale,
        "org": {**counts, **base},
        "libyaml_s": libyaml,
        "cold_s": cold,
        "cold_ratio": cold / libyaml,
        "warm_s": _median(runs["warm"]),
        "incremental_ms": _median(runs["incremental"]) * 1000,
        "peak_mb": max(r["peak_mb"] for mode in ("cold", "warm", "incremental") for r in runs[mode]),
        "fill_save_s": runs["fill"][0].get("save_seconds", 0.0),
        "runs": runs,
    }


def machine() -> dict[str, Any]:
    import yaml

    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pyyaml": yaml.__version__,
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "platform": platform.platform(),
    }


def table(results: list[dict[str, Any]]) -> str:
    head = ["team workers", "objects", "libyaml s", "cold s", "cold/libyaml", "warm s", "incr. ms", "peak MB"]
    rows = [head]
    for r in results:
        rows.append([
            f"{r['scale']:,}", f"{r['org']['objects']:,}", f"{r['libyaml_s']:.3f}", f"{r['cold_s']:.3f}",
            f"{r['cold_ratio']:.2f}", f"{r['warm_s']:.3f}", f"{r['incremental_ms']:.1f}", f"{r['peak_mb']:.0f}",
        ])
    rows.append(["target", "", "", "", f"≤ {TARGETS['cold_ratio']}", f"≤ {TARGETS['warm_s']} (10k)",
                 f"≤ {TARGETS['incremental_ms']:.0f} (10k)", f"≤ {TARGETS['peak_mb']:.0f} (10k)"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="100,1000,10000", help="team-worker counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; the median is reported")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--measure", choices=(*MODES, "prepare"), help=argparse.SUPPRESS)
    parser.add_argument("--org", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        if args.measure == "prepare":
            result = prepare_baseline(args.org, args.state)
        elif args.measure == "libyaml":
            result = measure_libyaml(args.org)
        else:
            result = measure_plan(args.measure, args.org, args.state, args.cache)
        print(json.dumps(result))
        return 0
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    results = [bench_scale(s, args.repeat, lambda m: print(m, file=sys.stderr, flush=True)) for s in scales]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "repeat": args.repeat, "results": results}, indent=2)
                             + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
