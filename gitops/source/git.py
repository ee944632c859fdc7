"""Git source: one branch of a remote fetched into a bare cache repository (auth, SSH, heads, ancestry).

No working tree is ever checked out: org files are read from commit trees (`gitops.source.trees`), status
commits are built in memory (`gitops.status.store`), commit signatures are checked by
`gitops.source.signatures`. libgit2 objects are not thread-safe, so a `GitSource` belongs to the thread that
created it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import CredentialType

from gitops.diagnostics import Diagnostic, diag
from gitops.settings.load import REDACTOR, is_local_path, optional_secret, redact_url
from gitops.settings.model import SourceSettings
from gitops.source.trees import CommitTreeSource, same_tree_outside

STATUS_TRAILER = "Hiclaw-Gitops-Status"
RECONCILED_TRAILER = "Reconciled-Commit"


class GitSourceError(Exception):
    """A git operation failed; `diagnostic` says what, where and what to do (never with a secret)."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(diagnostic.message)


class PushRejected(Exception):
    """The server refused a reference update (reported only through push_update_reference)."""

    def __init__(self, refname: str, message: str) -> None:
        self.refname, self.message = refname, message
        super().__init__(f"{refname}: {message}")


@dataclass(frozen=True, slots=True)
class GitAuth:
    """Credentials for the remote. Secret values live only here and in the redactor."""

    token: str | None = None
    token_username: str = "x-access-token"
    ssh_key_file: str = ""
    ssh_public_key_file: str = ""
    ssh_user: str = "git"
    ssh_passphrase: str = ""

    def __repr__(self) -> str:  # never show the token, even in a traceback
        return f"GitAuth(token={'***' if self.token else None}, ssh_key_file={self.ssh_key_file!r})"

    @classmethod
    def from_settings(cls, source: SourceSettings, env: Any = None) -> GitAuth:
        token = optional_secret(source.token_env, source.token_file, key="source.token", env=env)
        passphrase = optional_secret(
            source.ssh_passphrase_env, source.ssh_passphrase_file, key="source.ssh_passphrase", env=env
        )
        return cls(
            token=token,
            token_username=source.token_username,
            ssh_key_file=source.ssh_key_file,
            ssh_public_key_file=source.ssh_public_key_file
            or (source.ssh_key_file + ".pub" if source.ssh_key_file else ""),
            ssh_user=source.ssh_user,
            ssh_passphrase=passphrase or "",
        )


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials from GitAuth, and server-side push rejections turned into an exception."""

    MAX_AUTH_ATTEMPTS = 3

    def __init__(self, auth: GitAuth) -> None:
        super().__init__()
        self.auth = auth
        self.attempts = 0

    def credentials(self, url: str, username_from_url: str | None, allowed_types: CredentialType) -> Any:
        self.attempts += 1
        if self.attempts > self.MAX_AUTH_ATTEMPTS:  # libgit2 asks again after every refusal
            raise GitSourceError(_auth_failed(url))
        auth = self.auth
        if allowed_types & CredentialType.USERPASS_PLAINTEXT and auth.token:
            return pygit2.UserPass(auth.token_username, auth.token)
        user = username_from_url or auth.ssh_user
        if allowed_types & CredentialType.SSH_KEY:
            if auth.ssh_key_file:
                return pygit2.Keypair(user, auth.ssh_public_key_file, auth.ssh_key_file, auth.ssh_passphrase)
            return pygit2.KeypairFromAgent(user)
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(user)
        raise GitSourceError(_auth_failed(url))

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message is not None:
            raise PushRejected(refname, message)


def _auth_failed(url: str) -> Diagnostic:
    return diag(
        "G602",
        f"the remote {redact_url(url)} refused the credentials",
        hint="check source.token_env / token_file (https) or source.ssh_key_file (ssh) and the account's access",
    )


class Ancestry(StrEnum):
    SAME = "same"
    FAST_FORWARD = "fast-forward"
    REWRITTEN = "rewritten"  # a force-push: the previous commit is not an ancestor of the new head
    UNKNOWN = "unknown"  # the previous commit is not available (new cache, shallow history)


def error_diagnostic(exc: Exception, url: str, action: str) -> Diagnostic:
    """A libgit2 error as a diagnostic: unreachable, refused credentials, or a remote that answers garbage."""
    if isinstance(exc, GitSourceError):
        return exc.diagnostic
    text = REDACTOR.redact(str(exc).strip() or type(exc).__name__)
    lowered = text.lower()
    where = redact_url(url)
    if any(w in lowered for w in ("authentication", "credentials", "401", "403", "permission denied (publickey")):
        return _auth_failed(url)
    garbage = ("invalid", "corrupt", "malformed", "unexpected", "bad packet", "unknown", "protocol error",
               "not a git repository", "pkt-line", "unsupported url", "content-type", "http status")
    if any(w in lowered for w in garbage) and "connect" not in lowered:
        return diag("G604", f"{action} {where}: the remote answered with something that is not git: {text}",
                    hint="check that source.url points at a git repository")
    return diag("G601", f"{action} {where} failed: {text}",
                hint="check the URL, the network and the server; the reconciler retries with backoff")


class GitSource:
    """A remote branch mirrored into a bare cache repository under the state directory."""

    def __init__(
        self,
        url: str,
        branch: str,
        cache_dir: str | os.PathLike[str],
        *,
        auth: GitAuth | None = None,
        depth: int = 0,
        timeout: float = 30.0,
        known_hosts: str = "",
        readonly: bool = False,
    ) -> None:
        if not url:
            raise GitSourceError(
                diag("G601", "no repository configured", hint="set source.url in the settings, or pass --repo")
            )
        self.local = is_local_path(url) or url.startswith("file://")
        self.url = str(Path(url).expanduser().resolve()) if is_local_path(url) else url
        self.branch = branch
        self.auth = auth or GitAuth()
        # libgit2's local transport cannot fetch shallow; a local remote is cheap to fetch in full anyway.
        self.depth = 0 if self.local else depth
        self.cache_dir = Path(cache_dir)
        self.readonly = readonly  # read an existing cache as it is (another process owns it)
        _configure_libgit2(timeout, known_hosts, self.cache_dir)
        self.repo = self._open_cache()

    # Remote ------------------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{redact_url(self.url)}#{self.branch}"

    def remote_ref(self, branch: str | None = None) -> str:
        return f"refs/remotes/origin/{branch or self.branch}"

    def _open_cache(self) -> pygit2.Repository:
        try:
            if self.readonly:
                return pygit2.Repository(str(self.cache_dir))
            if (self.cache_dir / "HEAD").is_file():
                repo = pygit2.Repository(str(self.cache_dir))
            else:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                repo = pygit2.init_repository(str(self.cache_dir), bare=True)
            if "origin" in repo.remotes.names():
                if repo.remotes["origin"].url != self.url:
                    repo.remotes.set_url("origin", self.url)
                    repo.remotes.set_push_url("origin", self.url)
            else:
                repo.remotes.create("origin", self.url, fetch=f"+refs/heads/{self.branch}:{self.remote_ref()}")
            return repo
        except (pygit2.GitError, OSError) as exc:
            raise GitSourceError(
                diag("G601", f"cannot open the git cache at {self.cache_dir}: {exc}",
                     hint="check the state directory's permissions, or delete the cache to rebuild it")
            ) from exc

    def _check_local(self) -> None:
        if self.local:
            path = Path(self.url.removeprefix("file://"))
            if not path.exists():
                raise GitSourceError(
                    diag("G601", f"no repository at {path}", hint="check source.url or --repo")
                )

    def callbacks(self) -> Callbacks:
        return Callbacks(self.auth)

    def remote_heads(self) -> dict[str, str]:
        """Every branch the remote advertises, in one round trip (nothing is downloaded or written)."""
        self._check_local()
        try:
            heads = self.repo.remotes["origin"].list_heads(callbacks=self.callbacks())
        except Exception as exc:  # pygit2.GitError, or an error raised in a callback
            raise GitSourceError(error_diagnostic(exc, self.url, "listing the branches of")) from None
        return {h.name: str(h.oid) for h in heads if h.name and h.name.startswith("refs/heads/")}

    def head(self) -> str:
        """The remote tip of the branch: the one round trip a poll needs to decide whether anything changed."""
        tip = self.remote_heads().get(f"refs/heads/{self.branch}")
        if tip is None:
            raise GitSourceError(self._missing_branch(self.branch))
        return tip

    def _missing_branch(self, branch: str) -> Diagnostic:
        return diag("G603", f"the remote {redact_url(self.url)} has no branch `{branch}`",
                    hint="check source.branch / --branch, or push the branch first")

    def fetch(self, *extra_branches: str, depth: int | None = None) -> str:
        """Fetch the branch (and optional others, such as the status branch); return the branch tip."""
        self._check_local()
        branches = [self.branch, *(b for b in extra_branches if b and b != self.branch)]
        specs = [f"+refs/heads/{b}:{self.remote_ref(b)}" for b in branches]
        try:
            self.repo.remotes["origin"].fetch(
                specs, callbacks=self.callbacks(), depth=self.depth if depth is None else depth
            )
        except Exception as exc:
            raise GitSourceError(error_diagnostic(exc, self.url, "fetching")) from None
        tip = self.tip()
        if tip is None:
            raise GitSourceError(self._missing_branch(self.branch))
        return tip

    def tip(self, branch: str | None = None) -> str | None:
        """The last fetched tip of a branch (from the cache; no network)."""
        ref = self.repo.references.get(self.remote_ref(branch))
        return str(ref.target) if ref is not None else None

    def fetch_branch(self, branch: str) -> str | None:
        """Fetch one other branch in full (e.g. the status branch); None when the remote does not have it."""
        self._check_local()
        try:
            self.repo.remotes["origin"].fetch(
                [f"+refs/heads/{branch}:{self.remote_ref(branch)}"], callbacks=self.callbacks(), depth=0
            )
        except Exception as exc:
            raise GitSourceError(error_diagnostic(exc, self.url, "fetching")) from None
        ref = self.repo.references.get(self.remote_ref(branch))
        return str(ref.target) if ref is not None else None

    # Commits -----------------------------------------------------------------------------------------

    def commit(self, oid: str) -> pygit2.Commit:
        obj = self.repo.get(oid)
        if not isinstance(obj, pygit2.Commit):
            raise GitSourceError(diag("G604", f"commit {oid} is not in the fetched history"))
        return obj

    def has(self, oid: str) -> bool:
        try:
            return isinstance(self.repo.get(oid), pygit2.Commit)
        except (ValueError, pygit2.GitError):
            return False

    def ancestry(self, previous: str | None, new: str) -> Ancestry:
        """How the new head relates to the previously processed commit (force-push detection)."""
        if not previous:
            return Ancestry.UNKNOWN
        if previous == new:
            return Ancestry.SAME
        if not self.has(previous):
            return Ancestry.UNKNOWN
        if self.repo.descendant_of(new, previous):
            return Ancestry.FAST_FORWARD
        if self.repo.is_shallow:
            return Ancestry.UNKNOWN  # the shared history may simply not have been fetched
        return Ancestry.REWRITTEN

    def tree_source(self, oid: str, root: str = "", exclude: Sequence[str] = ()) -> CommitTreeSource:
        return CommitTreeSource(self.repo, self.commit(oid), root, exclude)

    def org_commit(self, oid: str, status_path: str = "") -> str:
        """The newest commit at or before `oid` that is not one of our own status commits.

        A status commit counts as ours only when it carries the trailer *and* changes nothing outside
        the status path, so a trailer alone cannot hide an org change from the reconciler.
        """
        commit = self.commit(oid)
        while is_status_commit(commit) and commit.parents:
            parent = commit.parents[0]
            if status_path and not same_tree_outside(self.repo, commit.tree, parent.tree, status_path):
                break
            commit = parent
        return str(commit.id)


def is_status_commit(commit: pygit2.Commit) -> bool:
    try:
        trailers = commit.message_trailers
    except (pygit2.GitError, ValueError):
        return False
    return trailers.get(STATUS_TRAILER, "").strip().lower() == "true"


_configured: dict[str, Any] = {}


def _configure_libgit2(timeout: float, known_hosts: str, cache_dir: Path) -> None:
    """Process-wide libgit2 options: network timeouts and, if given, the SSH known_hosts file."""
    ms = max(1, int(timeout * 1000))
    if _configured.get("timeout") != ms:
        pygit2.settings.server_connect_timeout = ms
        pygit2.settings.server_timeout = ms
        _configured["timeout"] = ms
    if known_hosts and _configured.get("known_hosts") != known_hosts:
        # libgit2 reads <home>/.ssh/known_hosts; give it a home of its own holding the configured file.
        home = cache_dir.parent / "ssh-home"
        (home / ".ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(known_hosts, home / ".ssh" / "known_hosts")
        pygit2.settings.homedir = str(home)
        _configured["known_hosts"] = known_hosts
