"""A user's connections, encrypted at rest.

One file per user (``connections.json``, mode 0600, in a 0700 folder): a JSON object mapping
each connection name to a Fernet token that holds the whole connection, secrets included. The
key comes from the operator: a master key in the hub's configuration, from which the spawner
derives one key per user (``user_key``), so one user's key opens no other user's file.

Secrets leave this module only as a ``Connection`` in memory, on their way to rclone's rc API
(a unix socket), which writes them obscured into its own 0600 config file.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .remotes import BACKENDS, Connection

FORMAT_VERSION = 1


class CredentialError(RuntimeError):
    """The store cannot be read or written; the message says what to do."""


def new_master_key() -> str:
    """A fresh random master key for the operator's configuration."""
    return Fernet.generate_key().decode()


def user_key(master_key: str | bytes, user: str) -> str:
    """The Fernet key of ``user``'s store, derived from the operator's master key (HKDF-SHA256)."""
    if isinstance(master_key, str):
        master_key = master_key.encode()
    if len(master_key) < 32:
        raise CredentialError("the credentials master key must be at least 32 characters long")
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"datalabs-connections-v1",
        info=user.encode(),
    ).derive(master_key)
    return base64.urlsafe_b64encode(derived).decode()


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class CredentialStore:
    """The encrypted connections of one user.

    ``path``: the store file. ``key``: that user's Fernet key (see ``user_key``).
    """

    def __init__(self, path: str | os.PathLike[str], key: str | bytes):
        self.path = Path(path)
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise CredentialError(
                "the credentials key is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None

    def _read(self) -> dict[str, str]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        return self._parse(raw)

    def _parse(self, raw: bytes) -> dict[str, str]:
        try:
            doc = json.loads(raw)
        except ValueError:
            raise CredentialError(f"{self.path} is not a connections file") from None
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise CredentialError(f"{self.path} has an unknown format")
        return dict(doc.get("connections", {}))

    def _write(self, entries: dict[str, str]) -> None:
        doc = {"version": FORMAT_VERSION, "connections": dict(sorted(entries.items()))}
        _write_private(self.path, json.dumps(doc, indent=1).encode())

    def _decrypt(self, name: str, token: str) -> Connection:
        try:
            doc = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise CredentialError(
                f"the stored connection {name!r} cannot be decrypted with this session's key "
                "(the operator may have changed the master key); delete it and create it again"
            ) from None
        # The name is inside the encrypted payload too, so entries cannot be swapped.
        if doc.get("name") != name:
            raise CredentialError(f"the stored connection {name!r} was tampered with")
        try:
            # Validated when saved; checked again only for what could break the code using it.
            connection = Connection(
                doc["name"],
                doc["backend"],
                dict(doc["options"]),
                doc.get("path", ""),
                bool(doc.get("writable", False)),
            )
        except (KeyError, TypeError):
            raise CredentialError(f"the stored connection {name!r} is incomplete") from None
        if connection.backend not in BACKENDS:
            raise CredentialError(f"the stored connection {name!r} has an unknown backend")
        return connection

    def get_from(self, raw: bytes, name: str) -> Connection | None:
        """The named connection in ``raw``, the bytes of a store file read by the caller (the
        hub reads a user's file itself, without following links; see
        ``datalabs_spawner.connections``), or None."""
        token = self._parse(raw).get(name)
        return None if token is None else self._decrypt(name, token)

    def names(self) -> list[str]:
        """The names of the stored connections, sorted."""
        return sorted(self._read())

    def list(self) -> list[Connection]:
        """Every stored connection, decrypted."""
        return [self._decrypt(n, t) for n, t in sorted(self._read().items())]

    def get(self, name: str) -> Connection | None:
        """The named connection, or None."""
        token = self._read().get(name)
        return None if token is None else self._decrypt(name, token)

    def put(self, connection: Connection) -> None:
        """Store (create or replace) a connection."""
        entries = self._read()
        payload = json.dumps(connection.to_json()).encode()
        entries[connection.name] = self._fernet.encrypt(payload).decode()
        self._write(entries)

    def delete(self, name: str) -> bool:
        """Remove a connection; False when there was none of that name."""
        entries = self._read()
        if entries.pop(name, None) is None:
            return False
        self._write(entries)
        return True
