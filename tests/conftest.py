"""Suite-wide rules: in CI nothing may be skipped — a real component that cannot start fails the run."""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and session.exitstatus == 0:
        if reporter:
            reporter.write_line(f"CI forbids skipped tests: {skipped} skipped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
