"""Git source: one branch of a remote fetched into a bare cache repository, read straight from commit trees.

No working tree is ever checked out: org files are read from blobs (their ids are git's own, so the parse
cache is shared with directory sources), status commits are built in memory (`gitops.status.model`). libgit2
objects are not thread-safe, so a `GitSource` belongs to the thread that created it.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pathspec
import pygit2
from pygit2.enums import CredentialType, FileMode

from gitops.diagnostics import Diagnostic, diag
from gitops.settings.load import REDACTOR, is_local_path, optional_secret, redact_url
from gitops.settings.model import SourceSettings
from gitops.source.files import IGNORE_FILE, SourceFile, ignore_spec, is_yaml

MAX_LINK_HOPS = 40
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


def same_tree_outside(repo: pygit2.Repository, a: pygit2.Tree | None, b: pygit2.Tree | None, path: str) -> bool:
    """Whether two trees are equal once the subtree at `path` is left out of both (None: an empty tree)."""
    head, _, rest = path.strip("/").partition("/")
    names = {e.name for e in (a or ()) if e.name} | {e.name for e in (b or ()) if e.name}
    for name in names:
        ea, eb = _entry(a, name), _entry(b, name)
        if name == head:
            if not rest:
                continue
            ta, tb = _as_tree(repo, ea), _as_tree(repo, eb)
            if (ea is not None and ta is None) or (eb is not None and tb is None):
                if (ea.id if ea else None) != (eb.id if eb else None):
                    return False  # a file where the status directory's parent should be
                continue
            if not same_tree_outside(repo, ta, tb, rest):
                return False
        elif ea is None or eb is None or ea.id != eb.id or ea.filemode != eb.filemode:
            return False
    return True


def _entry(tree: pygit2.Tree | None, name: str) -> pygit2.Object | None:
    if tree is None:
        return None
    try:
        return tree[name]
    except KeyError:
        return None


def _as_tree(repo: pygit2.Repository, entry: pygit2.Object | None) -> pygit2.Tree | None:
    if entry is None or entry.type_str != "tree":
        return None
    obj = repo[entry.id]
    return obj if isinstance(obj, pygit2.Tree) else None


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


# Reading a commit tree ------------------------------------------------------------------------------


class CommitTreeSource:
    """The FileSource of one commit: YAML files under the org root, `.hiclawignore` applied, no checkout."""

    def __init__(self, repo: pygit2.Repository, commit: pygit2.Commit, root: str = "",
                 exclude: Sequence[str] = ()) -> None:
        self.repo = repo
        self.commit = commit
        self.root = root.strip("/")
        self.exclude = tuple(e.strip("/") for e in exclude if e.strip("/"))
        self._problems: list[Diagnostic] = []

    @property
    def label(self) -> str:
        return str(self.commit.id)

    def problems(self) -> list[Diagnostic]:
        return list(self._problems)

    def _root_tree(self) -> pygit2.Tree | None:
        if not self.root:
            return self.commit.tree
        try:
            obj = self.commit.tree[self.root]
        except KeyError:
            return None
        tree = self.repo[obj.id]
        return tree if isinstance(tree, pygit2.Tree) else None

    def files(self) -> Iterator[SourceFile]:
        self._problems = []
        tree = self._root_tree()
        if tree is None:
            self._problems.append(
                diag("G609", f"the org path `{self.root}` is not a directory in commit {str(self.commit.id)[:12]}",
                     hint="check source.path / --path")
            )
            return
        ignored = None
        try:
            ignore_entry = tree[IGNORE_FILE]
            blob = self.repo[ignore_entry.id]
            if isinstance(blob, pygit2.Blob):
                ignored = ignore_spec(blob.data.decode("utf-8", errors="replace"))
        except KeyError:
            pass
        found: list[SourceFile] = []
        self._walk(tree, "", ignored, found)
        found.sort(key=lambda f: f.path)
        yield from found

    def _repo_path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    def _walk(
        self, tree: pygit2.Tree, prefix: str, ignored: pathspec.PathSpec[Any] | None, out: list[SourceFile]
    ) -> None:
        for entry in tree:
            name = entry.name or ""
            rel = prefix + name
            full = self._repo_path(rel)
            if any(full == e or full.startswith(e + "/") for e in self.exclude):
                continue
            is_dir = entry.type_str == "tree"
            if ignored is not None and ignored.match_file(rel + ("/" if is_dir else "")):
                continue
            if entry.filemode == FileMode.LINK:
                self._link(entry, rel, out)
            elif is_dir:
                sub = self.repo[entry.id]
                if isinstance(sub, pygit2.Tree):
                    self._walk(sub, rel + "/", ignored, out)
            elif entry.type_str == "blob" and is_yaml(name):
                out.append(self._file(rel, entry.id))
            # submodules (type "commit") are never followed

    def _file(self, rel: str, oid: pygit2.Oid) -> SourceFile:
        repo = self.repo

        def read() -> bytes:
            blob = repo[oid]
            return blob.data if isinstance(blob, pygit2.Blob) else b""

        return SourceFile(rel, str(oid), read)

    def _link(self, entry: pygit2.Object, rel: str, out: list[SourceFile]) -> None:
        name = entry.name or ""
        blob = self.repo[entry.id]
        target = blob.data.decode("utf-8", errors="replace") if isinstance(blob, pygit2.Blob) else ""
        full = self._repo_path(rel)
        resolved = self._resolve(full.split("/"))
        maybe_relevant = is_yaml(name) or "." not in name
        if resolved is None:
            if maybe_relevant:
                self._problems.append(
                    diag("Y108", f"symbolic link points outside the repository (to {target})", file=rel,
                         hint="copy the file into the repository instead of linking to it")
                )
            return
        obj = self._lookup(resolved)
        if obj is None:
            if is_yaml(name):
                self._problems.append(
                    diag("Y109", "cannot read file: its symbolic link points to a missing file", file=rel,
                         hint="point the link at an existing file, or remove it")
                )
            return
        if isinstance(obj, pygit2.Blob) and is_yaml(name):
            out.append(self._file(rel, obj.id))
        # a link to an in-repo directory would list the same files twice: skip it, as DirectorySource does

    def _lookup(self, parts: Sequence[str]) -> pygit2.Object | None:
        obj: pygit2.Object = self.commit.tree
        for part in parts:
            if not isinstance(obj, pygit2.Tree):
                return None
            try:
                obj = self.repo[obj[part].id]
            except KeyError:
                return None
        return obj

    def _resolve(self, parts: Sequence[str]) -> list[str] | None:
        """Repo-relative components of a path with every symlink followed; None when it leaves the repo."""
        pending = [p for p in parts if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    return None
                done.pop()
                continue
            entry = self._entry_at([*done, part])
            if entry is not None and entry.filemode == FileMode.LINK:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return None
                blob = self.repo[entry.id]
                target = blob.data.decode("utf-8", errors="replace") if isinstance(blob, pygit2.Blob) else ""
                if target.startswith("/"):
                    return None
                pending = target.split("/") + pending
                continue
            done.append(part)
        return done

    def _entry_at(self, parts: Sequence[str]) -> pygit2.Object | None:
        tree: pygit2.Object = self.commit.tree
        for i, part in enumerate(parts):
            if not isinstance(tree, pygit2.Tree):
                return None
            try:
                entry = tree[part]
            except KeyError:
                return None
            if i == len(parts) - 1:
                return entry
            if entry.filemode == FileMode.LINK:
                return None  # callers resolve links component by component
            tree = self.repo[entry.id]
        return None

    def escapes(self, relative: str) -> bool:
        full = self._repo_path(posixpath.normpath(relative))
        return self._resolve(full.split("/")) is None


# Signatures --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome of verifying one commit's signature."""

    ok: bool
    method: str  # "ssh", "gpg" or "" (unsigned)
    signer: str = ""
    diagnostic: Diagnostic | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.ok, "method": self.method or None, "signer": self.signer or None}


class SignatureVerifier:
    """Refuses commits that are unsigned, or signed by anyone outside the configured allowed signers.

    SSH signatures are checked with `ssh-keygen -Y verify` against an allowed-signers file (as git does);
    GPG signatures with `gpg --verify` against a dedicated GnuPG home whose keyring is the allow-list.
    """

    def __init__(self, allowed_signers: str = "", gpg_home: str = "") -> None:
        self.allowed_signers = allowed_signers
        self.gpg_home = gpg_home

    @classmethod
    def from_settings(cls, source: SourceSettings) -> SignatureVerifier | None:
        return cls(source.allowed_signers, source.gpg_home) if source.verify_signatures else None

    def verify(self, commit: pygit2.Commit) -> SignatureCheck:
        short = str(commit.id)[:12]
        signature, payload = commit.gpg_signature
        if not signature:
            return SignatureCheck(False, "", diagnostic=diag(
                "G606", f"commit {short} is not signed; signature verification is on",
                hint="sign commits (git commit -S) with a key in the allowed signers, or push a signed commit on top",
            ))
        if signature.lstrip().startswith(b"-----BEGIN SSH SIGNATURE-----"):
            if not self.allowed_signers:
                return self._refuse(short, "ssh", "it has an SSH signature but no source.allowed_signers is configured")
            return self._verify_ssh(short, signature, payload)
        if not self.gpg_home:
            return self._refuse(short, "gpg", "it has a GPG signature but no source.gpg_home is configured")
        return self._verify_gpg(short, signature, payload)

    def _refuse(self, short: str, method: str, why: str) -> SignatureCheck:
        return SignatureCheck(False, method, diagnostic=diag(
            "G607", f"commit {short} is not signed by an allowed signer: {why}",
            hint="sign with a key in the allowed signers, or add the signer's key after review",
        ))

    def _verify_ssh(self, short: str, signature: bytes, payload: bytes) -> SignatureCheck:
        with tempfile.TemporaryDirectory(prefix="hiclaw-sig-") as tmp:
            sig = Path(tmp) / "commit.sig"
            sig.write_bytes(signature)
            found = _run(["ssh-keygen", "-Y", "find-principals", "-f", self.allowed_signers, "-s", str(sig)])
            if found is None:
                return self._tool_missing("ssh-keygen")
            principals = [line.strip() for line in found.stdout.decode(errors="replace").splitlines() if line.strip()]
            if found.returncode != 0 or not principals:
                return self._refuse(short, "ssh", "the signing key is not in the allowed signers")
            for principal in principals:
                checked = _run(["ssh-keygen", "-Y", "verify", "-f", self.allowed_signers, "-I", principal,
                                "-n", "git", "-s", str(sig)], stdin=payload)
                if checked is not None and checked.returncode == 0:
                    return SignatureCheck(True, "ssh", principal)
        return self._refuse(short, "ssh", "the signature does not verify (the commit was altered, or the key is wrong)")

    def _verify_gpg(self, short: str, signature: bytes, payload: bytes) -> SignatureCheck:
        with tempfile.TemporaryDirectory(prefix="hiclaw-sig-") as tmp:
            sig, data = Path(tmp) / "commit.asc", Path(tmp) / "commit.payload"
            sig.write_bytes(signature)
            data.write_bytes(payload)
            done = _run(["gpg", "--homedir", self.gpg_home, "--batch", "--no-tty", "--trust-model", "always",
                         "--status-fd", "1", "--verify", str(sig), str(data)])
            if done is None:
                return self._tool_missing("gpg")
        status = done.stdout.decode(errors="replace").splitlines()
        valid = [line.split()[2] for line in status if line.startswith("[GNUPG:] VALIDSIG") and len(line.split()) > 2]
        refusals = ("[GNUPG:] EXPKEYSIG", "[GNUPG:] REVKEYSIG", "[GNUPG:] BADSIG")
        bad = [line for line in status if line.startswith(refusals)]
        if done.returncode == 0 and valid and not bad:
            return SignatureCheck(True, "gpg", valid[0])
        if any("NO_PUBKEY" in line for line in status):
            return self._refuse(short, "gpg", "the signing key is not in the keyring of source.gpg_home")
        return self._refuse(short, "gpg", "the signature does not verify, or the key is expired or revoked")

    def _tool_missing(self, tool: str) -> SignatureCheck:
        return SignatureCheck(False, "", diagnostic=diag(
            "G611", f"cannot verify signatures: `{tool}` is not installed or failed to start",
            hint=f"install {tool} on the reconciler's host, or turn signature verification off",
        ))


def _run(argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def ref_source(directory: str | os.PathLike[str], ref: str) -> tuple[CommitTreeSource, str]:
    """The org at `ref` in the git repository containing `directory`, read from the commit tree.

    The org root inside the commit is `directory`'s path relative to the repository's work tree, so
    `plan example-org --base origin/main` compares example-org/ with example-org/ at origin/main.
    Raises LookupError when there is no repository or the ref does not resolve.
    """
    where = Path(directory).resolve()
    found = pygit2.discover_repository(str(where))
    if found is None:
        raise LookupError(f"{where} is not inside a git repository")
    repo = pygit2.Repository(found)
    try:
        commit = repo.revparse_single(ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise LookupError(f"{ref!r} is not a commit of {repo.workdir or repo.path}") from exc
    workdir = Path(repo.workdir or found).resolve()
    root = where.relative_to(workdir).as_posix() if where != workdir else ""
    return CommitTreeSource(repo, commit, root=root), str(commit.id)
