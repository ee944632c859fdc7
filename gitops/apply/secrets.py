"""Secret store: generated credentials by name in `secrets.db` (SQLite, mode 0600), optionally encrypted.

Specs never hold a credential, only a `secret://<name>` reference; `resolve` swaps references for values at
the last moment, inside a backend's apply. A value is generated on first use from the shape of its name, or
is an output an apply produced (the executor `put`s it). `consumed_digest` is what lets a consumer's hash follow
the values it carries without ever holding one:

| Name                     | Value                                                                  |
|--------------------------|------------------------------------------------------------------------|
| `matrix/<x>/password`    | 32 hex characters                                                      |
| `matrix/<x>/token`       | never generated: an output of applying `matrix/user/<x>` (its login)     |
| `storage/<x>/secret-key` | 48 hex characters                                                      |
| `gateway/<x>/key`        | 64 hex characters                                                      |
| `human/...`              | 24 URL-safe characters (a human's initial password)                    |

With `HICLAW_GITOPS_SECRET_KEY` set, values are encrypted with AES-256-GCM (the secret's name as associated
data) under a key derived from it with scrypt; the `cryptography` package does the work, or PyCryptodome
(already required by the minio client) where `cryptography` is not installed. Values never appear in a
repr, a log line or an exception message, and every value handed out is registered with the settings
redactor so any text leaving the process can be scrubbed of it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import secrets as token
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from gitops.objects import SECRET_PREFIX
from gitops.settings.load import REDACTOR

KEY_ENV = "HICLAW_GITOPS_SECRET_KEY"
REFERENCE = re.compile(re.escape(SECRET_PREFIX) + r"([\w/.\-]+)")  # the characters objects.secret_refs accepts

# Name shape -> generator. Names matching none (and `matrix/<x>/token`) must be `put` before use.
GENERATORS: tuple[tuple[re.Pattern[str], Callable[[], str]], ...] = (
    (re.compile(r"matrix/[^/]+/password"), lambda: token.token_hex(16)),
    (re.compile(r"storage/[^/]+/secret-key"), lambda: token.token_hex(24)),
    (re.compile(r"gateway/[^/]+/key"), lambda: token.token_hex(32)),
    (re.compile(r"human/.+"), lambda: token.token_urlsafe(18)),
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL, nonce BLOB);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
"""
_CHECK = b"hiclaw-gitops secret store"


class SecretError(Exception):
    """The store cannot give a value: missing, undecryptable, or misconfigured. Never carries a value."""


class SecretMissing(SecretError, KeyError):
    """No value under this name and none can be generated."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def generator_for(name: str) -> Callable[[], str] | None:
    for pattern, make in GENERATORS:
        if pattern.fullmatch(name):
            return make
    return None


def generate(name: str) -> str:
    """A new value for a secret whose name has a known shape; SecretMissing says why one cannot be made."""
    generator = generator_for(name)
    if generator is None:
        what = "it is an output of the object that produces it (not applied yet)" if name.endswith(
            "/token") else "its name has no generator"
        raise SecretMissing(f"secret {name!r} does not exist yet and is not generated: {what}")
    return generator()


def consumed_digest(names: Iterable[str], lookup: Callable[[str], str | None]) -> str:
    """A digest of the values of the secrets `names` (a missing one counts as pending): what a consumer's hash
    covers, so a re-issued credential changes the hash of everything that carries it. Never a value."""
    h = hashlib.sha256()
    for name in sorted(set(names)):
        value = lookup(name)
        seen = b"=" + hashlib.sha256(value.encode()).digest() if value is not None else b"?"
        h.update(name.encode() + seen + b"\n")
    return h.hexdigest()[:16]


class _Cipher:
    """AES-256-GCM: `cryptography` if installed, else PyCryptodome; one format (nonce, ciphertext ‖ tag)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        if importlib.util.find_spec("cryptography") is not None:
            self.library = "cryptography"
        elif importlib.util.find_spec("Crypto") is not None:
            self.library = "pycryptodome"
        else:
            raise SecretError(
                f"{KEY_ENV} is set but no AES library is installed: install the `cryptography` package "
                f"(pip install cryptography), or unset {KEY_ENV} to keep the store unencrypted"
            )

    def __repr__(self) -> str:
        return f"_Cipher({self.library})"

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        if self.library == "cryptography":
            aead: Any = importlib.import_module("cryptography.hazmat.primitives.ciphers.aead")
            return nonce, bytes(aead.AESGCM(self._key).encrypt(nonce, plaintext, aad))
        aes: Any = importlib.import_module("Crypto.Cipher.AES")
        cipher = aes.new(self._key, aes.MODE_GCM, nonce=nonce)
        cipher.update(aad)
        data, tag = cipher.encrypt_and_digest(plaintext)
        return nonce, bytes(data) + bytes(tag)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        try:
            if self.library == "cryptography":
                aead: Any = importlib.import_module("cryptography.hazmat.primitives.ciphers.aead")
                return bytes(aead.AESGCM(self._key).decrypt(nonce, data, aad))
            aes: Any = importlib.import_module("Crypto.Cipher.AES")
            cipher = aes.new(self._key, aes.MODE_GCM, nonce=nonce)
            cipher.update(aad)
            return bytes(cipher.decrypt_and_verify(data[:-16], data[-16:]))
        except Exception:  # InvalidTag / ValueError: wrong key or tampered row; the cause is not shown
            raise SecretError(f"cannot decrypt the secret store: {KEY_ENV} does not match its key") from None


class SecretStore:
    """Credentials by name. Thread-safe: backends resolve references from the executor's worker threads."""

    FILE = "secrets.db"

    def __init__(self, state_dir: str | os.PathLike[str], *, key: str | None = None) -> None:
        """`key` overrides the environment variable (tests); an empty key means unencrypted."""
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / self.FILE
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)  # before sqlite, so it never exists wider
        os.close(fd)
        os.chmod(self.path, 0o600)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL with a sync per commit: a generated credential is on disk before any backend can use it.
        # SQLite creates the -wal and -shm files with the database file's mode (0600).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for suffix in ("-wal", "-shm", "-journal"):  # side files of an older opening: row data too
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        passphrase = os.environ.get(KEY_ENV, "") if key is None else key
        self._cipher = self._open_cipher(passphrase) if passphrase else None
        if self._cipher is None and self._meta("check") is not None:
            raise SecretError(f"the secret store {self.path} is encrypted: set {KEY_ENV}")

    @classmethod
    def exists(cls, state_dir: str | os.PathLike[str]) -> bool:
        return (Path(state_dir) / cls.FILE).is_file()

    @property
    def encrypted(self) -> bool:
        return self._cipher is not None

    def __repr__(self) -> str:
        return f"SecretStore({str(self.path)!r}, encrypted={self.encrypted})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Reading and writing -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM secrets ORDER BY name")]

    def get(self, name: str) -> str:
        """The value stored under `name`; SecretMissing when there is none (nothing is generated)."""
        value = self._read(name)
        if value is None:
            raise SecretMissing(f"no secret named {name!r} in {self.path}")
        return value

    def peek(self, name: str) -> str | None:
        """The value under `name`, or None (nothing is generated): for digests made while planning."""
        return self._read(name)

    def put(self, name: str, value: str) -> None:
        """Store a value obtained elsewhere (the Matrix backend's access token), replacing any earlier one."""
        if not value:
            raise SecretError(f"refusing to store an empty value for {name!r}")
        with self._lock:
            self._write(name, value)
        REDACTOR.add(value)

    def delete(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM secrets WHERE name = ?", (name,))

    def get_or_create(self, name: str) -> str:
        """The value under `name`, generating it first when its name has a known shape."""
        with self._lock:
            value = self._read(name)
            if value is not None:
                return value
            value = generate(name)
            self._write(name, value, replace=False)
        REDACTOR.add(value)
        return value

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        """A copy of `spec` with every `secret://name` inside a string replaced by the value."""
        resolved: Mapping[str, Any] = self._resolve(spec)
        return resolved

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            if SECRET_PREFIX not in value:
                return value
            return REFERENCE.sub(lambda m: self.get_or_create(m.group(1)), value)
        if isinstance(value, Mapping):
            return {k: self._resolve(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._resolve(v) for v in value]
        return value

    # Encryption --------------------------------------------------------------------------------------

    def _open_cipher(self, passphrase: str) -> _Cipher:
        with self._lock:
            salt = self._meta("salt")
            if salt is None:
                salt = os.urandom(16)
                self._db.execute("INSERT INTO meta(k, v) VALUES ('salt', ?)", (salt,))
            key = hashlib.scrypt(passphrase.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
            cipher = _Cipher(key)
            check = self._meta("check")
            if check is None:
                nonce, sealed = cipher.encrypt(_CHECK, b"check")
                self._db.execute("INSERT INTO meta(k, v) VALUES ('check', ?)", (nonce + sealed,))
            elif cipher.decrypt(check[:12], check[12:], b"check") != _CHECK:
                raise SecretError(f"cannot decrypt the secret store: {KEY_ENV} does not match its key")
            # Values stored before a key was set are encrypted now.
            rows = self._db.execute("SELECT name, value FROM secrets WHERE nonce IS NULL").fetchall()
            for name, value in rows:
                nonce, sealed = cipher.encrypt(bytes(value), name.encode())
                self._db.execute("UPDATE secrets SET value = ?, nonce = ? WHERE name = ?", (sealed, nonce, name))
        return cipher

    def _meta(self, k: str) -> bytes | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return bytes(row[0]) if row else None

    def _seal(self, name: str, value: str) -> tuple[bytes, bytes | None]:
        if self._cipher is None:
            return value.encode(), None
        nonce, sealed = self._cipher.encrypt(value.encode(), name.encode())
        return sealed, nonce

    def _write(self, name: str, value: str, replace: bool = True) -> None:
        """Store `value` (the caller holds the lock). Without `replace`, a row another process wrote since our
        read is an error, never overwritten."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self._db.execute(f"{verb} INTO secrets(name, value, nonce) VALUES (?, ?, ?)", (name, *self._seal(name, value)))

    def _read(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value, nonce FROM secrets WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        data, nonce = bytes(row[0]), row[1]
        if nonce is None:
            value = data.decode()
        elif self._cipher is None:
            raise SecretError(f"the secret store {self.path} is encrypted: set {KEY_ENV}")
        else:
            value = self._cipher.decrypt(bytes(nonce), data, name.encode()).decode()
        REDACTOR.add(value)
        return value
