"""Which settings file a command reads: `--settings`, else `$HICLAW_GITOPS_SETTINGS`, else `./hiclaw-gitops.yaml`.

No file at all is fine (upstream defaults). A file named by the flag or the variable must exist; the file in
the current directory is used only when it is there. The file found is never read as an org document
(`gitops.commands._org` leaves it out of the org, as it does any file of this name at the org root).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "HICLAW_GITOPS_SETTINGS"
DEFAULT_NAME = "hiclaw-gitops.yaml"
RESERVED_NAMES = (DEFAULT_NAME, "hiclaw-gitops.yml")  # never org documents at the org root


class SettingsNotFound(Exception):
    """The environment names a settings file that is not there."""


@dataclass(frozen=True, slots=True)
class Found:
    """The settings file to read (None: none, upstream defaults) and what named it."""

    path: Path | None
    origin: str  # "--settings", "$HICLAW_GITOPS_SETTINGS", "./hiclaw-gitops.yaml" or "" (none)


def discover(flag: str | None, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Found:
    """The settings file by precedence; SettingsNotFound when the variable names no file."""
    env = os.environ if env is None else env
    if flag:
        return Found(Path(flag), "--settings")  # the loader reports a file it cannot read (C505)
    named = env.get(ENV_VAR, "").strip()
    if named:
        return Found(_existing(Path(named).expanduser(), f"${ENV_VAR}"), f"${ENV_VAR}")
    here = (cwd or Path.cwd()) / DEFAULT_NAME
    if here.is_file():
        return Found(Path(DEFAULT_NAME) if cwd is None else here, f"./{DEFAULT_NAME}")
    return Found(None, "")


def _existing(path: Path, origin: str) -> Path:
    if path.is_file():
        return path
    what = "does not exist" if not path.exists() else "is not a file"
    raise SettingsNotFound(f"{origin} names {path}, which {what}")
