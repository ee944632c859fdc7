"""Commit signature verification: SSH (allowed signers) and GPG (a dedicated keyring) refuse strangers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gitops.daemon.pollers import PollOutcome
from gitops.source.git import GitSource
from gitops.source.signatures import SignatureVerifier

from .gitutil import OrgRepo, worker
from .harness import make_poller, settings_for


def ssh_key(tmp_path: Path, name: str) -> Path:
    key = tmp_path / "keys" / name
    key.parent.mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def ssh_signed(key: Path) -> tuple[str, ...]:
    return ("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}.pub", "-c", "commit.gpgsign=true")


@pytest.fixture
def signers(tmp_path: Path) -> tuple[Path, Path, Path]:
    alice, mallory = ssh_key(tmp_path, "alice"), ssh_key(tmp_path, "mallory")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'alice@example.com namespaces="git" {(alice.with_suffix(".pub")).read_text()}')
    return alice, mallory, allowed


def fetched(org: OrgRepo, tmp_path: Path) -> GitSource:
    source = GitSource(org.url, "main", tmp_path / "cache")
    source.fetch()
    return source


def test_ssh_signature_by_an_allowed_signer_is_accepted(org: OrgRepo, tmp_path: Path,
                                                         signers: tuple[Path, Path, Path]) -> None:
    alice, _, allowed = signers
    tip = org.commit("signed", {"workers/alice.yaml": worker("alice")}, extra=ssh_signed(alice))
    org.push()
    check = SignatureVerifier(allowed_signers=str(allowed)).verify(fetched(org, tmp_path).commit(tip))
    assert check.ok and check.method == "ssh" and check.signer == "alice@example.com"


def test_unsigned_and_unknown_signers_are_refused(org: OrgRepo, tmp_path: Path,
                                                  signers: tuple[Path, Path, Path]) -> None:
    _, mallory, allowed = signers
    unsigned = org.commit("unsigned", {"workers/alice.yaml": worker("alice")})
    stranger = org.commit("by mallory", {"workers/bob.yaml": worker("bob")}, extra=ssh_signed(mallory))
    org.push()
    source = fetched(org, tmp_path)
    verifier = SignatureVerifier(allowed_signers=str(allowed))
    first = verifier.verify(source.commit(unsigned))
    assert not first.ok and first.diagnostic is not None and first.diagnostic.code == "G606"
    second = verifier.verify(source.commit(stranger))
    assert not second.ok and second.diagnostic is not None and second.diagnostic.code == "G607"
    assert "not in the allowed signers" in second.diagnostic.message
    gpg_only = SignatureVerifier(gpg_home=str(tmp_path)).verify(source.commit(stranger))
    assert gpg_only.diagnostic is not None and gpg_only.diagnostic.code == "G607"


def test_the_daemon_refuses_an_unsigned_commit_with_a_clear_status(org: OrgRepo, tmp_path: Path,
                                                                   signers: tuple[Path, Path, Path]) -> None:
    alice, _, allowed = signers
    good = org.commit("signed", {"workers/alice.yaml": worker("alice")}, extra=ssh_signed(alice))
    org.push()
    settings = settings_for(org.url, tmp_path / "state", allowed_signers=str(allowed))
    poller, _ = make_poller(settings)
    assert poller.poll() is PollOutcome.PROCESSED
    bad = org.commit_and_push("unsigned", {"workers/bob.yaml": worker("bob")})
    assert poller.poll() is PollOutcome.PROCESSED
    summary = yaml.safe_load(org.show("hiclaw-status", "status/summary.yaml"))
    assert summary["commit"] == bad and summary["result"] == "Refused"
    assert [d["code"] for d in summary["diagnostics"]] == ["G606"]
    assert summary["signature"] == {"verified": False, "method": None, "signer": None}
    assert summary["lastGoodCommit"] == good
    alice_status = yaml.safe_load(org.show("hiclaw-status", "status/worker/alice.yaml"))
    assert alice_status["observedCommit"] == good  # nothing of the refused commit was taken in
    assert org.bare_git("ls-tree", "--name-only", "hiclaw-status:status/worker").split() == ["alice.yaml"]
    assert poller.poll() is PollOutcome.UNCHANGED  # refused once, not again on every poll


@pytest.fixture
def gpg_homes(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A signer's GnuPG home, a verifier home holding the signer's public key, and an empty one."""
    signer, verifier, empty = (tmp_path / n for n in ("gpg-signer", "gpg-verifier", "gpg-empty"))
    for home in (signer, verifier, empty):
        home.mkdir(mode=0o700)
    try:
        gpg = ["gpg", "--batch", "--no-tty", "--homedir"]
        subprocess.run([*gpg, str(signer), "--passphrase", "", "--quick-gen-key", "Alice <alice@example.com>",
                        "ed25519", "sign", "never"], check=True, capture_output=True)
        public = subprocess.run([*gpg, str(signer), "--armor", "--export", "alice@example.com"], check=True,
                                capture_output=True).stdout
        subprocess.run([*gpg, str(verifier), "--import"], input=public, check=True, capture_output=True)
        yield signer, verifier, empty
    finally:
        for home in (signer, verifier, empty):
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def test_gpg_signatures_verify_against_the_configured_keyring(org: OrgRepo, tmp_path: Path,
                                                              gpg_homes: tuple[Path, Path, Path]) -> None:
    signer, verifier_home, empty = gpg_homes
    org.env["GNUPGHOME"] = str(signer)
    tip = org.commit("gpg signed", {"workers/alice.yaml": worker("alice")},
                     extra=("-c", "user.signingkey=alice@example.com", "-c", "commit.gpgsign=true"))
    org.push()
    commit = fetched(org, tmp_path).commit(tip)
    good = SignatureVerifier(gpg_home=str(verifier_home)).verify(commit)
    assert good.ok and good.method == "gpg" and len(good.signer) == 40
    unknown = SignatureVerifier(gpg_home=str(empty)).verify(commit)
    assert not unknown.ok and unknown.diagnostic is not None and unknown.diagnostic.code == "G607"
    assert "keyring" in unknown.diagnostic.message
