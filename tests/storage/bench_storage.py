"""Storage benchmark: example-org and a 100-team-worker org provisioned onto a local SeaweedFS (aws-iam identities).

    .venv/bin/python tests/storage/bench_storage.py [--json FILE]

Per org: a cold pass (bucket, files, areas, users and policies) and a no-op pass — seconds, S3 and IAM requests,
requests per object, writes. Matrix is not part of it: stand-in tokens are put in the secret store for the files
that carry one. Prints a markdown table (docs/performance.md, *Storage*); never a key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from s3site import EXAMPLE_ORG, Site

from bench.generate import generate
from deploy.seaweedfs import SeaweedFS


def one_pass(site: Site) -> dict[str, Any]:
    backend = site.backend
    s3, s3w = backend.requests, backend.writes
    iam, iamw = backend.identity_requests, backend.identity_writes
    start = time.perf_counter()
    result = site.reconcile()
    seconds = time.perf_counter() - start
    assert result.plan is not None
    return {
        "seconds": round(seconds, 2),
        "changes": sum(1 for c in result.plan.changes if c.action != "noop"),
        "s3_requests": backend.requests - s3,
        "iam_requests": backend.identity_requests - iam,
        "writes": backend.writes - s3w + backend.identity_writes - iamw,
    }


def measure(store: SeaweedFS, org: Path, root: Path, name: str) -> dict[str, Any]:
    site = Site(store, root, org, bucket="hiclaw-storage")
    try:
        site.seed_matrix_tokens_of_org()
        cold = one_pass(site)
        objects = sum(1 for k in site.state.inventory_keys() if k.startswith("storage/"))
        noop = one_pass(site)
    finally:
        site.close()
    return {"org": name, "objects": objects, "cold": cold, "noop": noop}


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| org | storage objects | cold pass | S3 + IAM requests | per object | no-op pass | no-op requests "
           "| no-op writes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, n = r["cold"], r["noop"]
        total = c["s3_requests"] + c["iam_requests"]
        out.append(f"| {r['org']} | {r['objects']} | {c['seconds']:.2f} s | {c['s3_requests']} + {c['iam_requests']} "
                   f"| {total / max(r['objects'], 1):.1f} | {n['seconds']:.2f} s | {n['s3_requests']} + "
                   f"{n['iam_requests']} | {n['writes']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp:
        root = Path(tmp)
        synthetic = root / "synthetic"
        generate(100, synthetic)
        rows: list[dict[str, Any]] = []
        for name, org in (("example-org", EXAMPLE_ORG), ("synthetic, 100 team workers", synthetic)):
            store = SeaweedFS(root / f"weed-{len(rows)}")  # a fresh store each: IAM users are store-wide
            print(store.ensure(), file=sys.stderr)
            try:
                rows.append(measure(store, org, root / f"site-{len(rows)}", name))
            finally:
                print(store.stop(), file=sys.stderr)
    print(table(rows))
    print(f"\n{os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
