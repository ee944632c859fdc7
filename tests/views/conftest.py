"""Fixtures of the view tests: sample plans (see plan_samples.py) and golden-file comparison."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from plan_samples import no_changes, sample

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def sample_plan() -> dict[str, Any]:
    data: dict[str, Any] = sample().to_dict()
    return data


@pytest.fixture
def no_change_plan() -> dict[str, Any]:
    data: dict[str, Any] = no_changes().to_dict()
    return data


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    """Compare with tests/views/golden/NAME; `UPDATE_GOLDEN=1 pytest tests/views` rewrites the files."""

    def check(name: str, actual: str) -> None:
        path = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        assert path.is_file(), f"missing golden file {path}: run UPDATE_GOLDEN=1 pytest tests/views"
        expected = path.read_text(encoding="utf-8")
        assert actual == expected, f"{name} differs from its golden file (if intended: UPDATE_GOLDEN=1)"

    return check
