"""Structure-aware fuzzing of everything a user can hand the reconciler: org files, the filesystem they sit in,
the settings file and the environment. Every case runs `validate`, `plan` and `graph` in-process and must keep
the promises of tests/fuzz/fuzzharness.py (no exception, exit 0 or 1, located diagnostics, clean ⇒ plans and
draws, bounded time and memory).

Profiles (docs/fuzzing.md): by default a short run of fixed cases for CI — HICLAW_FUZZ_EXAMPLES cases in all
(default 500), shared among the tests by WEIGHTS, in batches of BATCH with seeds 0, 1, … The long run is the
same tests with more cases:

    HICLAW_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider

HICLAW_FUZZ_RANDOM=1 draws new random cases instead of the fixed sequence.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fuzzgen
import fuzzyaml
import pytest
from fuzzharness import Case, run_case
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

TOTAL = int(os.environ.get("HICLAW_FUZZ_EXAMPLES", "500"))
RANDOM = os.environ.get("HICLAW_FUZZ_RANDOM") == "1"
WEIGHTS = {"org": 0.5, "filesystem": 0.2, "settings": 0.3}
# Cases per Hypothesis run: a run remembers every case it drew, so a long profile is many runs (each with its
# own fixed seed), not one that grows by tens of kilobytes a case.
BATCH = 500


def examples(test: str) -> int:
    return max(1, round(TOTAL * WEIGHTS[test]))


def batches(test: str) -> range:
    return range(-(-examples(test) // BATCH))


def fuzz(test: str, batch: int, body: Callable[..., None], **strategies: st.SearchStrategy[Any]) -> None:
    """Run `body` on `strategies` for this batch's share of the test's cases: seed `batch` (the same cases on
    every run), or fresh random cases with HICLAW_FUZZ_RANDOM=1."""
    count = min(BATCH, examples(test) - batch * BATCH)
    run = settings(
        max_examples=count,
        database=None,
        deadline=None,  # the harness has its own per-case deadline, which interrupts hangs
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        print_blob=True,
    )(given(**strategies)(body))
    (run if RANDOM else seed(batch)(run))()


# Org files --------------------------------------------------------------------------------------------------

FOLDERS = ("", "workers/", "teams/", "humans/", "nested/deeper/")
FILE_NAMES = ("a.yaml", "b.yml", "c.yaml", ".hidden.yaml", "with space.yaml", "ü.yaml", "x.YAML", "d.yaml")


@dataclass
class OrgFiles:
    """Files of an org: repo-relative path -> bytes."""

    files: dict[str, bytes] = field(default_factory=dict)


@st.composite
def documents(draw: st.DrawFn, mutations: int = 3) -> list[Any]:
    """0-6 documents of any kinds, built from the schemas and mostly lightly mutated."""
    docs: list[Any] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(fuzzgen.WEIGHTED_KINDS))
        doc = fuzzgen.document(draw, kind)
        count = draw(st.integers(1, mutations)) if mutations and draw(st.integers(0, 5)) == 0 else 0
        doc = fuzzgen.mutate(draw, doc, count)
        if draw(st.integers(0, 9)) == 0:
            doc = fuzzyaml.with_merge(draw, doc)
        docs.append(doc)
    if docs and draw(st.integers(0, 19)) == 0:  # a document that is not a mapping, or empty
        docs.append(draw(st.sampled_from([None, "text", [1, 2], 3, {}])))
    return docs


@st.composite
def org_files(draw: st.DrawFn, mutations: int = 3, mangle: bool = True) -> OrgFiles:
    docs = draw(documents(mutations))
    out = OrgFiles()
    i = 0
    while i < len(docs):
        take = 1 if draw(st.integers(0, 3)) else draw(st.integers(1, 3))  # sometimes several per file
        chunk = docs[i : i + take]
        i += take
        text = fuzzyaml.dump(draw, chunk)
        if mangle and draw(st.integers(0, 7)) == 0:
            text = fuzzyaml.mangle(draw, text)
        data = fuzzyaml.encode(draw, text) if mangle and draw(st.integers(0, 9)) == 0 else text.encode("utf-8")
        path = draw(st.sampled_from(FOLDERS)) + f"{i:02d}-" + draw(st.sampled_from(FILE_NAMES))
        out.files[path] = data
    return out


def write(root: Path, files: OrgFiles) -> None:
    for rel, data in files.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.mark.parametrize("batch", batches("org"))
def test_org_files(batch: int) -> None:
    fuzz("org", batch, org_case, files=org_files(), extra=st.integers(0, 9))


def org_case(files: OrgFiles, extra: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-org-") as tmp:
        root = Path(tmp) / "org"
        root.mkdir()
        write(root, files)
        base = None
        if extra == 0:  # plan against a base that is this org mutated again (the base may be invalid)
            base = Path(tmp) / "base"
            base.mkdir()
            write(base, files)
        run_case(Case(root, base=base, as_base=extra == 1, variant=extra))


# The filesystem ---------------------------------------------------------------------------------------------

IGNORE_LINES = (
    "drafts/",
    "*.wip.yaml",
    "!keep.yaml",
    "!",
    "\\",
    "a\\",
    "[z-a]",
    "[a-",
    "**",
    "/",
    "**/x/**",
    "#comment",
    "",
    " ",
    "\\!x",
    "x\\ ",
    "[]",
    "[!]",
    "*.yaml",
    "é/",
    "\x00",
    "a\x07",
)
ODD_ENTRIES = (
    "link-in",
    "link-outside",
    "link-dev-zero",
    "link-dev-null",
    "link-loop",
    "link-self",
    "link-broken",
    "link-dir-in",
    "link-dir-outside",
    "fifo",
    "dir-named-yaml",
    "sparse-large",
    "empty",
    "ignore-fifo",
    "ignore-dir",
    "ignore-link-outside",
    "ignore-large",
    "socket",
    "unreadable",
)


@st.composite
def filesystems(draw: st.DrawFn) -> tuple[OrgFiles, list[str], list[str]]:
    files = draw(org_files(mutations=1, mangle=False))
    entries = draw(st.lists(st.sampled_from(ODD_ENTRIES), min_size=1, max_size=4))
    ignore = draw(st.lists(st.sampled_from(IGNORE_LINES), max_size=5))
    return files, entries, ignore


def odd_entry(root: Path, outside: Path, kind: str, i: int) -> None:
    """Make one filesystem oddity under the org root (`outside` is a folder next to it)."""
    name = root / f"odd{i}.yaml"
    existing = sorted(p for p in root.rglob("*.y*ml") if p.is_file() and not p.is_symlink())
    if kind == "link-in":
        if existing:
            name.symlink_to(os.path.relpath(existing[0], root))
    elif kind == "link-outside":
        target = outside / f"t{i}.yaml"
        target.write_text(worker_doc("outside"), encoding="utf-8")
        name.symlink_to(target)
    elif kind == "link-dev-zero":
        name.symlink_to("/dev/zero")
    elif kind == "link-dev-null":
        name.symlink_to("/dev/null")
    elif kind == "link-loop":
        (root / f"loop{i}a.yaml").symlink_to(f"loop{i}b.yaml")
        (root / f"loop{i}b.yaml").symlink_to(f"loop{i}a.yaml")
    elif kind == "link-self":
        name.symlink_to(name.name)
    elif kind == "link-broken":
        name.symlink_to("missing.yaml")
    elif kind == "link-dir-in":
        (root / f"dirlink{i}").symlink_to(".", target_is_directory=True)
    elif kind == "link-dir-outside":
        (root / f"dirlink{i}").symlink_to(outside, target_is_directory=True)
    elif kind == "fifo":
        os.mkfifo(name)
    elif kind == "dir-named-yaml":
        name.mkdir()
        (name / "inner.yaml").write_text(worker_doc(f"inner{i}"), encoding="utf-8")
    elif kind == "sparse-large":
        with open(name, "wb") as fh:  # over the 1 MiB cap without writing a byte
            fh.truncate((1 << 20) + 1 + i)
    elif kind == "empty":
        name.write_bytes(b"")
    elif kind == "ignore-fifo":
        _replace_ignore(root, lambda p: os.mkfifo(p))
    elif kind == "ignore-dir":
        _replace_ignore(root, lambda p: p.mkdir())
    elif kind == "ignore-link-outside":
        target = outside / "ignore"
        target.write_text("*.yaml\n", encoding="utf-8")
        _replace_ignore(root, lambda p: p.symlink_to(target))
    elif kind == "ignore-large":
        _replace_ignore(root, lambda p: _sparse(p, (1 << 20) + 7))
    elif kind == "socket":
        import socket

        path = root / f"s{i}.yaml"
        if len(str(path)) < 100:  # AF_UNIX paths are short
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.bind(str(path))
    elif kind == "unreadable" and existing:
        existing[-1].chmod(0)


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)


def _replace_ignore(root: Path, make: Any) -> None:
    path = root / ".hiclawignore"
    if path.is_dir() and not path.is_symlink():
        return
    path.unlink(missing_ok=True)
    make(path)


def worker_doc(name: str) -> str:
    return f"apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: {name}\nspec:\n  model: m\n"


@pytest.mark.parametrize("batch", batches("filesystem"))
def test_filesystem(batch: int) -> None:
    fuzz("filesystem", batch, filesystem_case, fs=filesystems())


def filesystem_case(fs: tuple[OrgFiles, list[str], list[str]]) -> None:
    files, entries, ignore = fs
    with tempfile.TemporaryDirectory(prefix="fuzz-fs-") as tmp:
        root, outside = Path(tmp) / "org", Path(tmp) / "outside"
        root.mkdir()
        outside.mkdir()
        write(root, files)
        if ignore:
            (root / ".hiclawignore").write_text("\n".join(ignore) + "\n", encoding="utf-8")
        for i, kind in enumerate(entries):
            odd_entry(root, outside, kind, i)
        try:
            run_case(Case(root))
        finally:
            for path in root.rglob("*"):
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)


# Settings and the environment -------------------------------------------------------------------------------

PROVIDER_ENDPOINTS = {"matrix": "url", "storage": "endpoint", "gateway": "console_url"}
ENDPOINTS = ("http://127.0.0.1:8008", "http://[::1]:9000", "https://h.example.com/", "h:9000") * 3 + (
    "http://[::1",
    "http://[zz]/",
    "http://h:99999",
)
SETTINGS_PATHS = ("file",) * 14 + ("dir", "fifo", "dev-zero", "link-dev-zero", "missing", "empty")
ENV_VALUES = (
    "",
    "x",
    "0",
    "-1",
    "true",
    "nope",
    "[]",
    "{}",
    "[{}]",
    '[{"name": "r"}, {"name": "r"}]',
    '[{"name": "r", "models": ["*"]}]',
    '{"openclaw": "img"}',
    '{"nope": 1}',
    "[" * 100_000 + "]" * 100_000,
    "[" * 65 + "]" * 65,
    '[{"name": ' + "[" * 70 + "]" * 70 + "}]",
    "[1,",
    "http://[::1",
    "http://[zz]/",
    "https://user:pw@example.com/org.git",
    "9" * 5000,
    "1e999",
    "nan",
)


SECRET_TARGETS = ("fifo", "/dev/zero", "/dev/null", "dir", "missing", "big", "empty", "fine")
PLACEHOLDER = "@SECRET-TARGET@"


@st.composite
def settings_cases(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str], OrgFiles, str]:
    root = fuzzgen._load("settings")
    data = fuzzgen.instance(draw, root, root)
    target = draw(st.sampled_from(SECRET_TARGETS)) if draw(st.integers(0, 3)) == 0 else ""
    if target:  # a file the settings name (a secret, a key, known_hosts) is something odd
        files = [(section, key) for section, block in root["properties"].items()
                 for key in block.get("properties", {}) if key.endswith(("_file", "known_hosts", "signers"))]
        section, key = draw(st.sampled_from(files))
        if not isinstance(data.get(section), dict):
            data[section] = {}
        data[section][key] = PLACEHOLDER
    for block in data.values():  # a secret from a variable or a file: mostly not both (C504)
        if isinstance(block, dict):
            for key in [k for k in block if k.endswith("_env") and k[:-4] + "_file" in block]:
                if draw(st.integers(0, 5)):
                    del block[draw(st.sampled_from((key, key[:-4] + "_file")))]
    if draw(st.integers(0, 3)) == 0:
        data = fuzzgen.mutate(draw, data, draw(st.integers(1, 3)))
    for section, key in PROVIDER_ENDPOINTS.items():  # a provider section mostly says where its service is
        block = data.get(section) if isinstance(data, dict) else None
        if isinstance(block, dict) and draw(st.integers(0, 5)):
            block[key] = draw(st.sampled_from(ENDPOINTS))
    text = fuzzyaml.dump(draw, [data])
    if draw(st.integers(0, 7)) == 0:
        text = fuzzyaml.mangle(draw, text)
    env: dict[str, str] = {}
    sections = root["properties"]
    for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
        section = draw(st.sampled_from(sorted(sections)))
        props = sections[section].get("properties", {})
        key = draw(st.sampled_from([*sorted(props), "unknown_key"])) if props else ""
        var = f"HICLAW_GITOPS_{section.upper()}" + (f"_{key.upper()}" if key else "")
        prop = props.get(key, {})
        if draw(st.integers(0, 2)) and prop:
            plausible = fuzzgen.instance(draw, prop, root, key)
            value = plausible if isinstance(plausible, str) else json.dumps(plausible)
            env[var] = value.replace("\x00", "")  # an environment cannot hold a NUL
        else:
            env[var] = draw(st.sampled_from(ENV_VALUES))
    org = draw(org_files(mutations=0, mangle=False))
    return draw(st.sampled_from(SETTINGS_PATHS)), text.encode("utf-8"), env, org, target


def secret_target(tmp: Path, kind: str) -> str:
    """The odd file a settings key names: made here, since a strategy only draws its kind."""
    path = tmp / "secret"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "big":
        _sparse(path, 1 << 30)
    elif kind in ("empty", "fine"):
        path.write_text("" if kind == "empty" else "s3cret-value\n", encoding="utf-8")
        path.chmod(0o600)
    elif kind.startswith("/"):
        return kind
    return str(path)


@pytest.mark.parametrize("batch", batches("settings"))
def test_settings(batch: int) -> None:
    fuzz("settings", batch, settings_case, case=settings_cases(), variant=st.integers(0, 5))


def settings_case(case: tuple[str, bytes, dict[str, str], OrgFiles, str], variant: int) -> None:
    kind, content, env, files, target = case
    with tempfile.TemporaryDirectory(prefix="fuzz-settings-") as tmp:
        root = Path(tmp) / "org"
        root.mkdir()
        write(root, files)
        if target:
            content = content.replace(PLACEHOLDER.encode(), secret_target(Path(tmp), target).encode())
        path = Path(tmp) / "settings.yaml"
        if kind == "file":
            path.write_bytes(content)
        elif kind == "dir":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dev-zero":
            path = Path("/dev/zero")
        elif kind == "link-dev-zero":
            path.symlink_to("/dev/zero")
        elif kind == "empty":
            path.write_bytes(b"")
        run_case(Case(root, str(path), env, variant=variant))
