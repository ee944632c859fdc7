"""Commit signature verification: SSH (allowed signers) or GPG (a dedicated keyring), refusing everyone else."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

from gitops.diagnostics import Diagnostic, diag
from gitops.settings.model import SourceSettings


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
