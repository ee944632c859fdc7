"""Helpers shared by commands: settings from flags and file, the org source, printing diagnostics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitops.diagnostics import Diagnostic, has_errors, render_text
from gitops.settings.model import Settings


def load_settings(args: argparse.Namespace) -> Settings:
    """Settings from --settings (validated) with flag overrides; upstream defaults without a file.

    Raises SystemExit(1) after printing diagnostics when the settings file is invalid.
    """
    from gitops.settings import load as settings_file

    settings, problems = settings_file.load_settings(args.settings, overrides=settings_file.Overrides.from_args(args))
    report(problems, color=False)
    if has_errors(problems) or settings is None:
        raise SystemExit(1)
    return settings


def org_root(args: argparse.Namespace, settings: Settings) -> Path:
    """The org directory: the positional PATH, else --path/source.path under the current directory."""
    if getattr(args, "path", None):
        return Path(args.path)
    sub = getattr(args, "org_path", None) or settings.source.path
    return Path(sub) if sub else Path(".")


def report(problems: list[Diagnostic], color: bool) -> None:
    if problems:
        sys.stderr.write(render_text(problems, color=color))
