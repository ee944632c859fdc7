"""The fuzz tests' summary line: how many cases ran, how long they took, what they found valid or not."""

from __future__ import annotations

import pytest
from fuzzharness import STATS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS.cases:
        return
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(STATS.outcomes.items()))
    terminalreporter.write_line(
        f"fuzz: {STATS.cases} cases in {STATS.seconds:.1f} s (slowest {STATS.slowest:.2f} s); {outcomes}; "
        f"{len(STATS.codes)} distinct diagnostic codes"
    )
    if STATS.slowest > 1:
        terminalreporter.write_line(f"fuzz: slowest case: {STATS.slowest_case}")
