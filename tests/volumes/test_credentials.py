"""The encrypted connection store: nothing readable at rest, one key per user."""

import json
import stat

import pytest

from datalabs_volumes.credentials import (
    CredentialError,
    CredentialStore,
    new_master_key,
    user_key,
)
from datalabs_volumes.remotes import validate
from tests.servers import CANARY

MASTER = new_master_key()


def connection(name="dav"):
    return validate(
        {
            "name": name,
            "backend": "webdav",
            "options": {"url": "https://dav.example.org", "user": "u", "pass": CANARY},
        },
        resolve=False,
    )


def test_connections_round_trip_and_are_encrypted_at_rest(tmp_path):
    store = CredentialStore(tmp_path / "secret" / "connections.json", user_key(MASTER, "alice"))
    store.put(connection("dav"))
    store.put(connection("other"))
    assert store.names() == ["dav", "other"]
    assert store.get("dav") == connection("dav")
    raw = store.path.read_bytes()
    assert CANARY.encode() not in raw and b"dav.example.org" not in raw
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.delete("dav") and not store.delete("dav")
    assert store.names() == ["other"]
    # No temporary file with the secrets is left next to the store.
    assert [p.name for p in store.path.parent.iterdir()] == ["connections.json"]


def test_each_user_has_their_own_key(tmp_path):
    path = tmp_path / "connections.json"
    CredentialStore(path, user_key(MASTER, "alice")).put(connection())
    assert user_key(MASTER, "alice") != user_key(MASTER, "bob")
    with pytest.raises(CredentialError, match="cannot be decrypted"):
        CredentialStore(path, user_key(MASTER, "bob")).get("dav")
    with pytest.raises(CredentialError, match="cannot be decrypted"):
        CredentialStore(path, user_key(new_master_key(), "alice")).list()


def test_entries_cannot_be_swapped_between_names(tmp_path):
    store = CredentialStore(tmp_path / "c.json", user_key(MASTER, "alice"))
    store.put(connection("dav"))
    doc = json.loads(store.path.read_text())
    doc["connections"]["renamed"] = doc["connections"].pop("dav")
    store.path.write_text(json.dumps(doc))
    with pytest.raises(CredentialError, match="tampered"):
        store.get("renamed")


def test_bad_keys_are_refused_with_a_message():
    with pytest.raises(CredentialError, match="Fernet key"):
        CredentialStore("/nonexistent", "not-a-key")
    with pytest.raises(CredentialError, match="at least 32"):
        user_key("short", "alice")
