"""Helpers shared by commands: the common options, settings from flags and file, the org, printing diagnostics."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gitops.commands._org import OrgSource, OrgUnavailable
from gitops.diagnostics import Diagnostic, has_errors, render_text
from gitops.settings.model import Settings

EXIT_CODES = """\
exit codes (the same for every command):
  0  success; no changes
  1  error of any kind: invalid input, usage errors, a failed or refused step
  2  changes present (plan --detailed-exitcode) or drift found (drift)"""

# name -> (flags, keyword arguments); each command offers only the ones it honours.
_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "settings": (("--settings",), {
        "metavar": "FILE",
        "help": "settings file (YAML); default: $HICLAW_GITOPS_SETTINGS, else ./hiclaw-gitops.yaml if present, "
                "else upstream defaults",
    }),
    "repo": (("--repo",), {"metavar": "URL", "help": "org repository: URL, path or file:// (overrides source.url)"}),
    "branch": (("--branch",), {"metavar": "NAME", "help": "branch to follow (overrides source.branch)"}),
    "path": (("--path",), {"dest": "org_path", "metavar": "DIR",
                           "help": "org root inside the repository (overrides source.path)"}),
    "state_dir": (("--state-dir",), {"metavar": "DIR", "help": "state directory (overrides state_dir)"}),
    "status_branch": (("--status-branch",), {"metavar": "NAME", "help": "status branch (overrides status.branch)"}),
    "color": (("--color",), {"choices": ("auto", "always", "never"), "default": "auto",
                             "help": "colour (default: auto, on a terminal unless NO_COLOR is set)"}),
}

# What a read-only command that reads the org can be pointed at: a folder, or a remote's commit.
READ_ORG = ("settings", "repo", "branch", "path", "color")


def common_options(*names: str, suppress: bool = False) -> argparse.ArgumentParser:
    """A parent parser with the named common options (SPEC §7). `suppress`: for a sub-action's parser, so an
    option given before the action is not reset by the action's parser when it is not repeated after it."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    for name in names:
        flags, kwargs = _OPTIONS[name]
        kwargs = dict(kwargs)
        if suppress:
            kwargs["default"] = argparse.SUPPRESS
        group.add_argument(*flags, **kwargs)
    return common


def add_command(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    options: Sequence[str],
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A command's parser with its common options and the exit-code table in its help."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common_options(*options)], epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs,
    )
    return parser


def settings_file(args: argparse.Namespace) -> Path | None:
    """The settings file this command reads (discovery: --settings, $HICLAW_GITOPS_SETTINGS, ./hiclaw-gitops.yaml).

    Raises SystemExit(1) after one sentence when the environment names a file that is not there.
    """
    from gitops.settings.discovery import SettingsNotFound, discover

    try:
        return discover(getattr(args, "settings", None)).path
    except SettingsNotFound as exc:
        print(f"hiclaw-gitops: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def load_settings(args: argparse.Namespace, *, secrets: bool = False) -> Settings:
    """Settings from the discovered file (validated) with flag overrides; upstream defaults without a file.

    Raises SystemExit(1) after printing diagnostics when the settings file is invalid.
    """
    from gitops.settings import load as settings_load

    path = settings_file(args)
    settings, problems = settings_load.load_settings(
        path, overrides=settings_load.Overrides.from_args(args), secrets=secrets
    )
    report(problems, color=False)
    if has_errors(problems) or settings is None:
        raise SystemExit(1)
    return settings


def open_org(args: argparse.Namespace, settings: Settings, positional: str | None = None) -> OrgSource:
    """The org a command reads. With --repo or --branch: that remote's branch tip, read from its commit tree
    (the org root inside it: PATH, else --path / source.path). Otherwise the folder PATH, else --path /
    source.path under the current directory, else the current directory. Raises OrgUnavailable."""
    from gitops.commands import _org

    if getattr(args, "repo", None) or getattr(args, "branch", None):
        if not settings.source.url:
            raise OrgUnavailable("--branch reads a remote: name it with --repo or source.url in the settings")
        return _org.remote(settings, positional or getattr(args, "org_path", None) or settings.source.path)
    root = positional or getattr(args, "org_path", None) or settings.source.path or "."
    return _org.local(root, settings, settings_file(args))


def org_argument(parser: argparse.ArgumentParser) -> None:
    """The positional PATH of a command that reads one org, locally or from a remote."""
    parser.add_argument("path", nargs="?", default=None, metavar="PATH",
                        help="org folder (default: --path, else .); with --repo, the folder inside the repository")


def with_org(args: argparse.Namespace, settings: Settings, body: Callable[[OrgSource], int]) -> int:
    """Open the org of PATH (see open_org), run `body` on it and close it; an org that cannot be read is
    reported (exit code 1)."""
    try:
        org = open_org(args, settings, args.path)
    except OrgUnavailable as exc:
        return unavailable(exc, args.color)
    try:
        return body(org)
    except OrgUnavailable as exc:
        return unavailable(exc, args.color)
    finally:
        org.close()


def report(problems: Sequence[Diagnostic], color: bool) -> None:
    if problems:
        sys.stderr.write(render_text(problems, color=color))


def unavailable(exc: OrgUnavailable, color: bool) -> int:
    """The org cannot be read: its diagnostics when there are some, else one sentence; exit code 1."""
    if exc.diagnostics:
        report(exc.diagnostics, color)
        return 1
    return fail(str(exc))


def fail(message: str) -> int:
    """One sentence on stderr; exit code 1."""
    print(f"hiclaw-gitops: {message}", file=sys.stderr)
    return 1
