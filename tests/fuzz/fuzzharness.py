"""Run one fuzz case in-process and check the promises every bad input is owed (SPEC §9).

A case is an org folder, optionally a settings path and environment overrides. It is run through the command
line as a user runs it — `validate`, `plan`, `graph` via `gitops.cli.main` — and through the pipeline and the
settings loader directly, and must:

- raise nothing (a usage error's SystemExit carries the exit code; anything else escaping is a finding);
- exit 0 or 1, and print no traceback;
- report every diagnostic with a catalogued code, a message and a hint, a file (unless it is about the whole
  org) and a line ≥ 1 (unless it is about a whole file, or names an environment variable or a flag);
- when validation is clean, plan and draw (exit 0);
- finish within CASE_SECONDS (a SIGALRM timer interrupts a hang, even one blocked in a system call, and fails
  the case) and grow the process's peak memory by at most MAX_GROWTH_MB.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from gitops.cli import main
from gitops.diagnostics import CODES, WHOLE_FILE, WHOLE_ORG, Diagnostic
from gitops.pipeline import read_org
from gitops.settings.load import load_settings
from gitops.source.files import DirectorySource
from gitops.validate.check import settings_checks

CASE_SECONDS = float(os.environ.get("HICLAW_FUZZ_CASE_SECONDS", "20"))
KEEP_SLOW = os.environ.get("HICLAW_FUZZ_KEEP_SLOW", "")  # a folder: cases slower than 2 s are copied there
MAX_GROWTH_MB = 1024


class CaseTimeout(BaseException):
    """A case ran past its deadline. A BaseException, so that no `except Exception` in the code under test
    can swallow it."""


class Finding(AssertionError):
    """A broken promise: what was run, and what went wrong."""


@dataclass
class Stats:
    """What the fuzz tests ran, for the summary line (tests/fuzz/conftest.py)."""

    cases: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    slowest_case: str = ""
    outcomes: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)


STATS = Stats()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in the main thread once `seconds` have passed (system calls are interrupted)."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeout(f"the case ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def environment(overrides: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """Only the given HICLAW_GITOPS_* variables (none of the caller's) and HICLAW_GITOPS_DEBUG, in a working
    directory of its own."""
    saved = dict(os.environ)
    here = os.getcwd()
    for key in [k for k in os.environ if k.startswith("HICLAW_GITOPS_") or k == "NO_COLOR"]:
        del os.environ[key]
    os.environ.update(overrides)
    os.environ["HICLAW_GITOPS_DEBUG"] = "1"  # the CLI lets an unexpected exception through: it is a finding
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str


def cli(argv: Sequence[str]) -> Run:
    """`hiclaw-gitops ARGV` in-process: its exit code and output. Any exception but SystemExit propagates."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Run(tuple(argv), int(code), out.getvalue(), err.getvalue())


def check_run(run: Run, allowed: tuple[int, ...] = (0, 1)) -> None:
    if run.code not in allowed:
        raise Finding(f"{' '.join(run.argv)}: exit code {run.code}\n{run.err[-2000:]}")
    for stream in (run.out, run.err):
        if "Traceback (most recent call last)" in stream or "internal error" in stream:
            raise Finding(f"{' '.join(run.argv)}: a traceback or an internal error reached the user:\n{stream[-3000:]}")


def check_diagnostics(diagnostics: Sequence[Diagnostic], where: str) -> None:
    for d in diagnostics:
        STATS.codes[d.code] += 1
        problem = ""
        if d.code not in CODES:
            problem = "an unknown code"
        elif not d.message.strip():
            problem = "no message"
        elif not d.hint.strip():
            problem = "no hint"
        elif not d.file and d.code not in WHOLE_ORG:
            problem = "no file"
        elif d.line < 1 and d.code not in WHOLE_FILE | WHOLE_ORG and not d.file.startswith(("$", "--")):
            problem = "no line"
        elif d.line >= 1 and d.column < 1:
            problem = "a line without a column"
        if problem:
            raise Finding(f"{where}: diagnostic with {problem}: {d}")


@dataclass(frozen=True)
class Case:
    """An org folder, a settings path (or None) and the HICLAW_GITOPS_* variables to run with."""

    org: Path
    settings: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    base: Path | None = None  # also plan this org against that base folder
    as_base: bool = False  # also plan a small valid org against this one as its base
    variant: int = 0  # picks the output formats and graph view


GOOD_ORG = "apiVersion: hiclaw.io/v1beta1\nkind: Worker\nmetadata:\n  name: good\nspec:\n  model: m\n"


def run_case(case: Case) -> str:
    """Run the case under the deadline and check every promise; returns its outcome (for the statistics)."""
    started = time.monotonic()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fds_before = _open_fds()
    with tempfile.TemporaryDirectory(prefix="fuzz-work-") as tmp:
        work = Path(tmp)
        try:
            with environment(case.env, work), deadline(CASE_SECONDS):
                outcome = _run(case, work)
        except CaseTimeout as exc:
            raise Finding(f"{case}: {exc}") from None
        except Finding:
            raise
        except Exception as exc:
            raise Finding(f"{case}: an exception escaped:\n{traceback.format_exc()[-4000:]}") from exc
    elapsed = time.monotonic() - started
    if KEEP_SLOW and elapsed > 2:
        _keep(case, elapsed)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    if grown_mb > MAX_GROWTH_MB:
        raise Finding(f"{case}: peak memory grew by {grown_mb:.0f} MB")
    leaked = sorted(_open_fds() - fds_before)
    if leaked:
        raise Finding(f"{case}: left {len(leaked)} file descriptors open: {[_fd_target(fd) for fd in leaked]}")
    STATS.cases += 1
    STATS.seconds += elapsed
    if elapsed > STATS.slowest:
        STATS.slowest, STATS.slowest_case = elapsed, repr(case)[:300]
    STATS.outcomes[outcome] += 1
    return outcome


def _run(case: Case, work: Path) -> str:
    org = str(case.org)
    settings_args = ("--settings", case.settings) if case.settings is not None else ()
    common = (*settings_args, "--color", "never")

    settings, problems = load_settings(case.settings, env=dict(case.env))
    check_diagnostics(problems, f"settings {case.settings}")
    if settings is not None:  # as the daemon loads them: every secret and file read once
        _, problems = load_settings(case.settings, env=dict(case.env), secrets=True)
        check_diagnostics(problems, f"settings {case.settings} with secrets")
    if settings is not None:
        read = read_org(DirectorySource(case.org), **settings_checks(settings))
        check_diagnostics(read.validation.diagnostics, f"org {org}")

    validate = cli(("validate", org, "--format", "json", *common))
    check_run(validate)
    if settings is None:
        if validate.code != 1:
            raise Finding(f"{case}: invalid settings, yet validate exited {validate.code}")
    else:
        body = _json(validate)
        if body["valid"] != (validate.code == 0):
            raise Finding(f"{case}: validate's JSON says valid={body['valid']} but it exited {validate.code}")
        if read.ok != (validate.code == 0):
            raise Finding(f"{case}: read_org ok={read.ok} but validate exited {validate.code}")
    state = ("--state-dir", str(work / "state"))
    offline = ("--base", str(_empty(work))) if settings is not None and settings.providers else ()
    plan_format = ("text", "markdown", "json")[case.variant % 3]
    graph_format = (("--format", "mermaid"), ("--format", "dot"))[case.variant % 2]
    view = ("all", "members", "access")[case.variant // 2 % 3]
    plan = cli(("plan", org, *offline, *state, "--format", plan_format, *common))
    graph = cli(("graph", org, *graph_format, "--view", view, *common))
    check_run(plan)
    check_run(graph)
    if plan.code == 0 and plan_format == "json":
        _json(plan)
    if validate.code == 0 and (plan.code, graph.code) != (0, 0):
        raise Finding(f"{case}: validates, yet plan exited {plan.code} and graph {graph.code}:\n{plan.err}{graph.err}")
    if case.base is not None:
        check_run(cli(("plan", org, "--base", str(case.base), *state, *common)))
    if case.as_base:
        head = work / "head"
        head.mkdir()
        (head / "good.yaml").write_text(GOOD_ORG, encoding="utf-8")
        check_run(cli(("plan", str(head), "--base", org, *state, *common)))
    if settings is None:
        return "settings-invalid"
    return "valid" if validate.code == 0 else "invalid"


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")} if os.path.isdir("/proc/self/fd") else set()


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _keep(case: Case, elapsed: float) -> None:
    """Copy a slow case's org and settings file (when regular) for a closer look."""
    target = Path(KEEP_SLOW) / f"{elapsed:07.2f}s-{os.getpid()}-{STATS.cases}"
    shutil.copytree(case.org, target / "org", symlinks=True, ignore_dangling_symlinks=True,
                    ignore=lambda d, names: [n for n in names if not (Path(d) / n).is_file()
                                             and not (Path(d) / n).is_dir()])
    if case.settings and Path(case.settings).is_file():
        shutil.copy(case.settings, target / "settings.yaml")
    (target / "case.txt").write_text(repr(case), encoding="utf-8")


def _json(run: Run) -> Any:
    try:
        return json.loads(run.out)
    except ValueError as exc:
        raise Finding(f"{' '.join(run.argv)}: the JSON output does not parse ({exc}):\n{run.out[:2000]}") from None


def _empty(work: Path) -> Path:
    path = work / "empty-base"
    path.mkdir(exist_ok=True)
    return path
