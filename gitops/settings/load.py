"""Settings file: load the YAML, apply environment and flag overrides, validate, and resolve secrets.

Order of precedence, lowest first: built-in defaults, the settings file, `HICLAW_GITOPS_<SECTION>_<KEY>`
environment variables, command-line flags. Everything is validated against `schemas/settings.schema.json`
with the same diagnostics as the org repository, then checked for the things a schema cannot say
(a provider without an endpoint, secrets that cannot be read). Secret values are never part of a
diagnostic; every value read by `resolve_secret` is registered with `REDACTOR` so logs and status can
scrub it.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import os
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gitops.diagnostics import Diagnostic, diag, has_errors
from gitops.settings.model import Settings, from_mapping
from gitops.source.files import read_regular
from gitops.source.yamlparse import MAX_DEPTH, MAX_FILE_BYTES, Locator, parse
from gitops.validate import schema as schema_mod

ENV_PREFIX = "HICLAW_GITOPS_"
MAX_SECRET_BYTES = 64 << 10  # a token, password or key file; anything larger is not a secret file
PROVIDER_ENDPOINTS = {"matrix": "url", "storage": "endpoint", "gateway": "console_url"}
# Keys naming files or directories: relative values in a settings file are relative to the file's folder.
PATH_KEYS = {
    ("source", "token_file"), ("source", "ssh_key_file"), ("source", "ssh_public_key_file"),
    ("source", "ssh_passphrase_file"), ("source", "ssh_known_hosts"), ("source", "allowed_signers"),
    ("source", "gpg_home"), ("source", "webhook_secret_file"), ("matrix", "admin_password_file"),
    ("matrix", "registration_shared_secret_file"), ("matrix", "actor_password_file"), ("matrix", "actor_token_file"),
    ("matrix", "registration_token_file"), ("storage", "access_key_file"), ("storage", "secret_key_file"),
    ("gateway", "password_file"),
}


class SettingsError(Exception):
    """Settings could not be loaded; `diagnostics` says why, precisely."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics if d.severity.value == "error"))


class SecretError(Exception):
    """A secret could not be read; the diagnostic names where it was expected, never a value."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(diagnostic.message)


class Redactor:
    """Every secret value this process has read, to be scrubbed from any text leaving it."""

    MASK = "***"

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) >= 4:  # shorter values would mask ordinary words; such secrets are refused anyway
            with self._lock:
                self._values.add(value)

    def redact(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, self.MASK)
        return text

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


REDACTOR = Redactor()


@dataclass(frozen=True, slots=True)
class Overrides:
    """The common command-line flags that override the settings file (SPEC §7)."""

    repo: str | None = None
    branch: str | None = None
    path: str | None = None
    state_dir: str | None = None
    status_branch: str | None = None

    @classmethod
    def from_args(cls, args: Any) -> Overrides:
        return cls(
            repo=getattr(args, "repo", None),
            branch=getattr(args, "branch", None),
            path=getattr(args, "org_path", None),
            state_dir=getattr(args, "state_dir", None),
            status_branch=getattr(args, "status_branch", None),
        )

    def items(self) -> Iterable[tuple[tuple[str, ...], str, str]]:
        """(settings path, flag, value) for every flag given."""
        table = (
            (("source", "url"), "--repo", self.repo),
            (("source", "branch"), "--branch", self.branch),
            (("source", "path"), "--path", self.path),
            (("state_dir",), "--state-dir", self.state_dir),
            (("status", "branch"), "--status-branch", self.status_branch),
        )
        for path, flag, value in table:
            if value is not None:
                yield path, flag, value


@cache
def settings_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((schema_mod.schema_dir() / "settings.schema.json").read_text("utf-8"))
    return data


def _property(path: Sequence[str]) -> dict[str, Any] | None:
    node: dict[str, Any] = settings_schema()
    for step in path:
        props = node.get("properties", {})
        if step not in props:
            return None
        node = props[step]
    return node


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Overrides | None = None,
    secrets: bool = False,
) -> tuple[Settings | None, list[Diagnostic]]:
    """Settings from a file (or none), the environment and flags; None when any error was found.

    With `secrets=True` every configured secret and file is also read once, so a daemon fails at start
    with a precise message instead of at its first use.
    """
    env = os.environ if env is None else env
    diagnostics: list[Diagnostic] = []
    data: dict[str, Any] = {}
    file = str(path) if path is not None else ""
    locator: Locator | None = None
    if path is not None:
        loaded = _read_file(Path(path), diagnostics)
        if loaded is None:
            return None, diagnostics
        data, locator = loaded
        _absolutise(data, Path(path).resolve().parent)
    in_file = set(data)  # the sections the file itself has (the environment and flags may add others)

    origins: dict[tuple[str, ...], str] = {}  # settings path -> "$ENV_NAME" or "--flag"
    _apply_env(data, env, origins, diagnostics)
    for target, flag, value in (overrides or Overrides()).items():
        _set(data, target, value)
        origins[target] = flag

    def locate(p: Sequence[str | int], key: bool) -> tuple[int, int]:
        if locator is None or _origin(p, origins):
            return 0, 0
        return locator.locate(file, 0, p, key)

    for d in schema_mod.check("settings", data, file, locate):
        diagnostics.append(_relocate(d, origins))
    if has_errors(diagnostics):
        return None, diagnostics

    def where(p: Sequence[str | int]) -> dict[str, Any]:
        origin = _origin(p, origins)
        if origin:
            return {"file": origin, "path": schema_mod.json_path(p)}
        if p and p[0] not in in_file:  # a section that only an environment variable or a flag brought in
            origin = next((o for key, o in origins.items() if key[0] == p[0]), "")
            if origin:
                return {"file": origin, "path": schema_mod.json_path(p)}
        line, column = locate(p, True)
        return {"file": file, "line": line, "column": column, "path": schema_mod.json_path(p)}

    diagnostics.extend(_check_semantics(data, where))
    if secrets and not has_errors(diagnostics):
        diagnostics.extend(_check_secrets(data, env, where))
    if has_errors(diagnostics):
        return None, diagnostics
    return from_mapping(data), diagnostics


def settings_from_args(args: Any, *, secrets: bool = False, env: Mapping[str, str] | None = None) -> Settings:
    """Settings for a command: `--settings` plus the common flags; raises SettingsError on any error."""
    settings, diagnostics = load_settings(
        getattr(args, "settings", None), env=env, overrides=Overrides.from_args(args), secrets=secrets
    )
    if settings is None:
        raise SettingsError(diagnostics)
    return settings


# Reading the file ----------------------------------------------------------------------------------


def _read_file(path: Path, diagnostics: list[Diagnostic]) -> tuple[dict[str, Any], Locator] | None:
    """The settings file's mapping. Only a regular file is read, and at most MAX_FILE_BYTES of it: a FIFO
    would block forever and /dev/zero never ends."""
    try:
        content = read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        diagnostics.append(
            diag("C505", f"cannot read the settings file: {exc.strerror or exc}", file=str(path),
                 hint="give --settings (or HICLAW_GITOPS_SETTINGS) the path of a YAML file")
        )
        return None
    file = str(path)
    docs, problems = parse(file, content)
    if problems:
        diagnostics.extend(problems)
        return None
    if len(docs) > 1:
        diagnostics.append(
            diag("C505", f"the settings file has {len(docs)} YAML documents; it must have one", file=file,
                 line=docs[1].line, column=1, hint="remove the `---` separators")
        )
        return None
    data = docs[0].data if docs else {}
    if not isinstance(data, dict):
        diagnostics.append(
            diag("Y106", "the settings file must be a mapping of sections (source, status, runtime, …)",
                 file=file, line=docs[0].line if docs else 1, column=1,
                 hint="write `section:` lines at the left margin, e.g. `runtime:` then `  backend: docker`")
        )
        return None
    text = content.decode("utf-8").removeprefix("\ufeff")
    return data, Locator({file: text})


def _absolutise(data: dict[str, Any], base: Path) -> None:
    """Relative paths in a settings file are relative to the file's own folder."""
    for section, key in PATH_KEYS:
        block = data.get(section)
        if isinstance(block, dict) and isinstance(block.get(key), str) and block[key]:
            block[key] = str(base / os.path.expanduser(block[key]))
    if isinstance(data.get("state_dir"), str) and data["state_dir"]:
        data["state_dir"] = str(base / os.path.expanduser(data["state_dir"]))
    source = data.get("source")
    if isinstance(source, dict) and isinstance(source.get("url"), str) and is_local_path(source["url"]):
        source["url"] = str(base / os.path.expanduser(source["url"]))


def is_local_path(url: str) -> bool:
    """A plain path (not a URL and not scp-like `user@host:path`)."""
    if not url or "://" in url:
        return False
    if url.startswith(("/", ".", "~")):
        return True
    head = url.split("/", 1)[0]
    return ":" not in head


# Overrides -------------------------------------------------------------------------------------------


def _set(data: dict[str, Any], where: Sequence[str], value: Any) -> None:
    if len(where) == 1:
        data[where[0]] = value
        return
    section = data.get(where[0])
    if not isinstance(section, dict):
        section = {}
        data[where[0]] = section
    section[where[1]] = value


def _referenced_env_names(data: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for block in data.values():
        if isinstance(block, dict):
            names.update(v for k, v in block.items() if k.endswith("_env") and isinstance(v, str))
    return names


def _apply_env(
    data: dict[str, Any], env: Mapping[str, str], origins: dict[tuple[str, ...], str], out: list[Diagnostic]
) -> None:
    sections = settings_schema()["properties"]
    secret_names = _referenced_env_names(data)
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in secret_names:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        if rest == "state_dir":
            data["state_dir"] = env[name]
            origins[("state_dir",)] = f"${name}"
            continue
        section = next((s for s in sections if s != "state_dir" and rest.startswith(s + "_")), None)
        if section is None:
            continue  # not a settings variable (other parts of the product share the prefix)
        key = rest[len(section) + 1:]
        allowed = sorted(sections[section]["properties"])
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = (
                f"did you mean {ENV_PREFIX}{section.upper()}_{close[0].upper()}?"
                if close
                else f"keys of `{section}`: {', '.join(allowed)}"
            )
            out.append(diag("C506", f"{name} names no setting: `{section}` has no key `{key}`", file=f"${name}",
                            hint=hint))
            continue
        prop = sections[section]["properties"][key]
        try:
            value = _coerce(env[name], prop)
        except _BadOverride as exc:
            what = "a list" if prop.get("type") == "array" else "a mapping"
            out.append(diag("C512", f"{name} must be {what} written as JSON, but {exc}", file=f"${name}",
                            hint=f"write {what} in JSON, e.g. " + ('[{"name": "default-ai-route"}]'
                            if key == "routes" else '{"key": "value"}') + ", or set it in the settings file"))
            continue
        _set(data, (section, key), value)
        origins[(section, key)] = f"${name}"


def _coerce(raw: str, prop: Mapping[str, Any]) -> Any:
    """An environment string as the type the schema wants; left as text when it does not convert."""
    kind = prop.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    try:
        if "boolean" in kinds:
            lowered = raw.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            return raw
        if "integer" in kinds:
            return int(raw.strip())
        if "number" in kinds:
            return float(raw.strip())
        if "array" in kinds or "object" in kinds:
            return _json_value(raw)
    except ValueError:
        return raw
    return raw


class _BadOverride(Exception):
    """An environment value for a list or mapping setting that cannot be used as one."""


def _json_value(raw: str) -> Any:
    """JSON for a list or mapping setting; _BadOverride when it does not parse or nests too deeply.

    The nesting is measured before parsing, so a deeply nested value never reaches the recursive decoder."""
    depth = deepest = 0
    quoted = escaped = False
    for char in raw:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise _BadOverride(f"it nests more than {MAX_DEPTH} levels deep")
        elif char in "]}":
            depth -= 1
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _BadOverride(f"it is not JSON ({str(exc).split(':', 1)[0]})") from None


def _origin(path: Sequence[str | int], origins: Mapping[tuple[str, ...], str]) -> str:
    for length in (2, 1):
        key = tuple(str(p) for p in path[:length])
        if len(key) == length and key in origins:
            return origins[key]
    return ""


def _relocate(d: Diagnostic, origins: Mapping[tuple[str, ...], str]) -> Diagnostic:
    """A schema problem in an overridden value points at the variable or flag, not the file."""
    parts = [p.split("[", 1)[0] for p in d.path.removeprefix("$.").split(".") if p]
    origin = _origin(parts, origins)
    if not origin:
        return d
    return replace(d, file=origin, line=0, column=0)


# Checks a schema cannot express --------------------------------------------------------------------


def secret_keys(section: str) -> list[str]:
    """Base names of the secrets of a section (`token` for token_env / token_file)."""
    props = settings_schema()["properties"][section].get("properties", {})
    return sorted(k.removesuffix("_env") for k in props if k.endswith("_env") and f"{k[:-4]}_file" in props)


def _check_semantics(data: Mapping[str, Any], where: Any) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for section, key in PROVIDER_ENDPOINTS.items():
        if section in data and not (data[section] or {}).get(key):
            out.append(
                diag("C501", f"`{section}` is configured but `{section}.{key}` is not set",
                     hint=f"set `{key}`, or leave the `{section}` section out to disable the {section} provider",
                     **where([section]))
            )
    for section in settings_schema()["properties"]:
        block = data.get(section)
        if not isinstance(block, dict):
            continue
        for base in secret_keys(section):
            if block.get(f"{base}_env") and block.get(f"{base}_file"):
                out.append(
                    diag("C504", f"`{section}.{base}_env` and `{section}.{base}_file` are both set",
                         hint="keep one: the secret comes from either an environment variable or a file",
                         **where([section, f"{base}_file"]))
                )
    out.extend(_check_text(data, where))
    out.extend(_check_urls(data, where))
    out.extend(_check_routes(data, where))
    url = (data.get("source") or {}).get("url") or ""
    if isinstance(url, str) and url_problem(url) is None and has_credentials(url):
        out.append(
            diag("C507", "the repository URL carries credentials (the value is not shown)",
                 hint="remove them from the URL and use `source.token_env` or `source.token_file`",
                 **where(["source", "url"]))
        )
    return out


# Settings holding a URL (`scheme://host[:port]/…`); source.url may also be a path or scp-like `user@host:path`.
URL_KEYS = (
    ("source", "url"), ("runtime", "docker_url"), ("matrix", "url"), ("storage", "endpoint"),
    ("gateway", "console_url"), ("gateway", "ai_gateway_url"),
)


def url_problem(url: str) -> str | None:
    """Why a `scheme://…` URL cannot be used (a broken IPv6 host, a port that is not one), else None."""
    if "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check (ValueError when it is not a number 0-65535)
    except ValueError as exc:
        return str(exc) or "it cannot be parsed"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in parts.netloc):
        return "its host contains a space or control character"
    return None


def _control(value: Any) -> str | None:
    """The first control character in a setting's text (nested in lists and mappings too), else None."""
    if isinstance(value, str):
        return next((c for c in value if ord(c) < 0x20 or ord(c) == 0x7F), None)
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
    return next((c for c in map(_control, items) if c is not None), None)


def _check_text(data: Mapping[str, Any], where: Any) -> list[Diagnostic]:
    """No setting is text with a NUL, a newline or another control character: a path with a NUL cannot be
    opened, a name with a newline breaks every protocol it reaches. The value is not shown."""
    out: list[Diagnostic] = []
    for section, block in data.items():
        keys = block.items() if isinstance(block, Mapping) else [(None, block)]
        for key, value in keys:
            char = _control(value)
            if char is not None:
                name = f"{section}.{key}" if key is not None else section
                out.append(
                    diag("C513", f"`{name}` holds the control character U+{ord(char):04X}",
                         hint="remove it; no setting is more than one line of printable text",
                         **where([section, key] if key is not None else [section]))
                )
    return out


def _check_urls(data: Mapping[str, Any], where: Any) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for section, key in URL_KEYS:
        block = data.get(section)
        value = block.get(key) if isinstance(block, dict) else None
        problem = url_problem(value) if isinstance(value, str) and _control(value) is None else None
        if problem is not None:
            out.append(  # the URL itself is not shown: it may carry credentials
                diag("C511", f"`{section}.{key}` is not a usable URL: {problem}",
                     hint="write scheme://host[:port]/path; an IPv6 host goes in brackets, e.g. http://[::1]:8080/",
                     **where([section, key]))
            )
    return out


def _check_routes(data: Mapping[str, Any], where: Any) -> list[Diagnostic]:
    """Each gateway route is one Higress AI route, named by its `name`: two of one name would be one route."""
    gateway = data.get("gateway")
    routes = gateway.get("routes") if isinstance(gateway, dict) else None
    out: list[Diagnostic] = []
    first: dict[str, int] = {}
    for i, route in enumerate(routes if isinstance(routes, list) else []):
        name = route.get("name") if isinstance(route, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            out.append(
                diag("C510", f"gateway route `{name}` is declared twice (first at routes[{first[name]}])",
                     hint="give each route its own name, or merge their `models` into one route",
                     **where(["gateway", "routes", i, "name"]))
            )
        else:
            first[name] = i
    return out


def has_credentials(url: str) -> bool:
    """Whether an http(s) URL embeds a user, token or password (`https://token@host/…`)."""
    if "://" not in url:
        return False
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return bool(parts.username or parts.password)
    return parts.password is not None


def redact_url(url: str) -> str:
    """The URL with any embedded credentials removed, safe for logs and status."""
    if "://" not in url or "@" not in url.split("://", 1)[1].split("/", 1)[0]:
        return url
    scheme, rest = url.split("://", 1)
    host_part, _, tail = rest.partition("/")
    return f"{scheme}://***@{host_part.rsplit('@', 1)[1]}" + (f"/{tail}" if tail or rest.endswith("/") else "")


def _check_secrets(data: Mapping[str, Any], env: Mapping[str, str], where: Any) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for section in settings_schema()["properties"]:
        block = data.get(section)
        if not isinstance(block, dict):
            continue
        for base in secret_keys(section):
            env_name, file_path = block.get(f"{base}_env") or "", block.get(f"{base}_file") or ""
            if not (env_name or file_path):
                continue
            key_path = [section, f"{base}_env" if env_name else f"{base}_file"]
            try:
                resolve_secret(env_name, file_path, key=f"{section}.{base}", env=env, where=where(key_path))
            except SecretError as exc:
                out.append(exc.diagnostic)
                continue
            if file_path:
                out.extend(_permission_warning(Path(file_path), where(key_path)))
    source = data.get("source") or {}
    for key, must_be_dir in (("ssh_key_file", False), ("ssh_public_key_file", False), ("ssh_known_hosts", False),
                             ("allowed_signers", False), ("gpg_home", True)):
        value = source.get(key)
        if value:
            problem = _unreadable(Path(value), must_be_dir)
            if problem:
                out.append(diag("C509", f"`source.{key}` {problem}", hint="check the path and its permissions",
                                **where(["source", key])))
    return out


def _unreadable(path: Path, must_be_dir: bool) -> str:
    try:
        if must_be_dir:
            if not path.is_dir():
                return f"is not a directory: {path}"
            os.listdir(path)
        else:  # without waiting: a FIFO with no writer must not hang the check
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 1)
            finally:
                os.close(fd)
    except OSError as exc:
        return f"cannot be read: {path}: {exc.strerror}"
    return ""


def _permission_warning(path: Path, where: Mapping[str, Any]) -> list[Diagnostic]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return [diag("C508", f"secret file {path} can be read by other users", hint=f"chmod 600 {path}", **where)]
    return []


def resolve_secret(
    env_name: str,
    file_path: str,
    *,
    key: str = "secret",
    env: Mapping[str, str] | None = None,
    where: Mapping[str, Any] | None = None,
) -> str:
    """The secret from the named environment variable or file; SecretError with a precise diagnostic if not.

    The value is registered with REDACTOR so that it can never leak into a log line or a status file.
    """
    env = os.environ if env is None else env
    located = dict(where or {})
    if env_name:
        value = env.get(env_name)
        if value is None or not value.strip():
            state = "is not set" if value is None else "is empty"
            raise SecretError(
                diag("C503", f"environment variable {env_name} (for `{key}`) {state}",
                     hint=f"export {env_name} in the reconciler's environment, or use `{key}_file`", **located)
            )
        value = value.strip()
    elif file_path:
        try:  # a regular file only, and a bounded read: a FIFO would block, a device never end
            content = read_regular(file_path, MAX_SECRET_BYTES)
            if len(content) > MAX_SECRET_BYTES:
                raise OSError(errno.EFBIG, f"it is over the {MAX_SECRET_BYTES:,}-byte cap for a secret")
            value = content.decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise SecretError(
                diag("C502", f"cannot read the secret file for `{key}`: {file_path}: {reason}",
                     hint="check the path and that the reconciler's user can read it", **located)
            ) from None
        if not value:
            raise SecretError(diag("C502", f"the secret file for `{key}` is empty: {file_path}",
                                   hint="write the secret into the file, or point the setting at the right file",
                                   **located))
    else:
        raise SecretError(diag("C503", f"no source configured for `{key}`", hint=f"set `{key}_env` or `{key}_file`",
                               **located))
    REDACTOR.add(value)
    return value


def optional_secret(env_name: str, file_path: str, *, key: str, env: Mapping[str, str] | None = None) -> str | None:
    """The secret when one is configured, None when neither source is set."""
    if not (env_name or file_path):
        return None
    return resolve_secret(env_name, file_path, key=key, env=env)
