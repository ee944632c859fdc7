"""Helpers shared by commands: settings from flags and file, the org source, printing diagnostics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitops.diagnostics import Diagnostic, has_errors, render_text
from gitops.settings import Settings


def load_settings(args: argparse.Namespace) -> Settings:
    """Settings from --settings (validated) with flag overrides; upstream defaults without a file.

    Raises SystemExit(1) after printing diagnostics when the settings file is invalid.
    """
    try:
        from gitops import settings_file
    except ImportError:  # pragma: no cover - settings files arrive with the daemon
        if args.settings:
            print("hiclaw-gitops: settings files are not supported by this build", file=sys.stderr)
            raise SystemExit(1) from None
        return Settings()
    settings, problems = settings_file.load_settings(args.settings, args)
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
