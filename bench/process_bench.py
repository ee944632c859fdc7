"""Whole-process plan benchmark: what a user waits for, interpreter start-up and imports included.

    python -m bench.process_bench [--scales 1000,10000] [--repeat 3] [--kinds realistic,level1-heavy] [--json F]

For each org kind (`realistic`: `bench.generate` as committed; `level1-heavy`: one Human in four at level 1, see
`bench.generate --level1-heavy`) and scale, the org is written to a temporary directory and two commands are
run as fresh processes, their output discarded:

- first plan: `hiclaw-gitops plan ORG --format json` with nothing applied (an empty state directory);
- no-change plan: the same against a state directory holding what an apply of the org records.

Wall time is measured around the process; peak memory is the child's `ru_maxrss`. Medians of N runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("realistic", "level1-heavy")


def run_plan(org: Path, state: Path) -> dict[str, float]:
    """One `plan --format json` process; its wall seconds and peak resident MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "gitops", "plan", str(org), "--format", "json", "--state-dir", str(state)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 2):
        raise SystemExit(f"plan failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: measure each run in its own helper process.
    return {"seconds": seconds, "peak_mb": max(peak, before) / 1024}


def measure(org: Path, state: Path) -> dict[str, float]:
    """Run one plan in a fresh helper process, so RUSAGE_CHILDREN holds that plan alone."""
    code = (
        "import json, sys; from pathlib import Path; from bench.process_bench import run_plan; "
        "print(json.dumps(run_plan(Path(sys.argv[1]), Path(sys.argv[2]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(org), str(state)], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench(kind: str, scale: int, repeat: int) -> dict[str, Any]:
    from bench.generate import generate
    from bench.plan_bench import prepare_baseline

    with tempfile.TemporaryDirectory(prefix="process-bench-") as tmp:
        org = Path(tmp) / "org"
        counts = generate(scale, org, level1_heavy=kind == "level1-heavy")
        empty, applied = Path(tmp) / "empty", Path(tmp) / "applied"
        empty.mkdir()
        prepared = prepare_baseline(org, applied)
        first = [measure(org, empty) for _ in range(repeat)]
        again = [measure(org, applied) for _ in range(repeat)]
    return {
        "kind": kind, "scale": scale, "org": {**counts, "objects": prepared["objects"]},
        "first_s": statistics.median(r["seconds"] for r in first),
        "first_mb": statistics.median(r["peak_mb"] for r in first),
        "nochange_s": statistics.median(r["seconds"] for r in again),
        "nochange_mb": statistics.median(r["peak_mb"] for r in again),
        "runs": {"first": first, "nochange": again},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="1000,10000")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    results = []
    print(f"{'org':>14} {'team workers':>13} {'objects':>9} {'first s':>8} {'first MB':>9} {'no-change s':>12} "
          f"{'no-change MB':>13}")
    for kind in args.kinds.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            r = bench(kind, scale, args.repeat)
            results.append(r)
            print(f"{kind:>14} {scale:>13,} {r['org']['objects']:>9,} {r['first_s']:>8.2f} {r['first_mb']:>9.0f} "
                  f"{r['nochange_s']:>12.2f} {r['nochange_mb']:>13.0f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"repeat": args.repeat, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
